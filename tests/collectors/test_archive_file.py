"""The archive file under stress (#11 items 9-12, 14): someone else's database, a full disk, a read-only copy, a
damaged archive, and the WAL under readers. Real SQLite files, real processes, real file permissions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from collectors import archive
from collectors.archive import schema
from collectors.cli import cli
from tests.conftest import REPO
from tests.seed import seed

def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"MOEGO_API_KEY": None, "MOEGO_BASE_URL": None})
    return result.exit_code, result.output


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- item 10: someone else's database ------------------------------------------------------------------


def other_application(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, customer TEXT, cents INTEGER)")
    conn.executemany("INSERT INTO invoices (customer, cents) VALUES (?, ?)", [(f"c{i}", i * 100) for i in range(500)])
    conn.commit()
    conn.close()


@pytest.mark.parametrize("command", [["collect", "--api-key", "k", "--base-url", "http://127.0.0.1:9"],
                                     ["status"], ["export", "--since", "2026-11-01", "--until", "2026-11-02", "--out", "-"]])
def test_someone_elses_database_is_refused_and_left_alone(tmp_path: Path, command: list[str]) -> None:
    other = tmp_path / "other.db"
    other_application(other)
    before = digest(other)
    code, output = run_cli(*command, "--db", str(other))
    assert code == 1
    assert output.strip().splitlines()[-1].startswith(f"Error: {other} is not a moego-monitor archive (it holds the "
                                                      "tables invoices)")
    assert digest(other) == before  # not a table, trigger or row added; not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no -wal, -shm or .lock left beside it
    with sqlite3.connect(other) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["invoices"]


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n" * 100)
    before = digest(notes)
    with pytest.raises(archive.ArchiveError, match=r"notes.db is not a moego-monitor archive \(file is not a database\)"):
        archive.connect(notes)
    assert digest(notes) == before


def test_an_empty_file_and_an_older_archive_are_ours(tmp_path: Path) -> None:
    empty = tmp_path / "touched.db"
    empty.touch()  # e.g. created by a provisioning script
    conn = archive.connect(empty)
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION
    conn.close()
    old = tmp_path / "schema1.db"
    raw = sqlite3.connect(old, isolation_level=None)
    for statement in schema._split_sql(schema._MIGRATIONS[0]):
        raw.execute(statement)
    raw.execute("PRAGMA user_version = 1")
    raw.close()
    conn = archive.connect(old)
    archive.ensure_db_shape(conn)  # migrated, not refused
    assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    conn.close()


# -- item 11: a full disk --------------------------------------------------------------------------------

# One big transaction (larger than SQLite's page cache, so pages spill to the WAL inside it, as a full-volume
# page of 500 entries with 4 KiB bodies does): SQLite rolls the whole transaction back itself on the write error.
_WRITE_UNTIL_FULL = """
import os, sys
from collectors import archive
conn = archive.connect(sys.argv[1])
archive.ensure_db_shape(conn)
try:
    for _ in range(1000):
        with archive.transaction(conn):
            conn.executemany("INSERT INTO collector_runs (started_at, outcome, trigger, error) VALUES ('x', 'ok', 'collect', ?)",
                             [(os.urandom(1500).hex(),) for _ in range(1000)])
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def _can_mount_tmpfs() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_a_full_disk_says_database_or_disk_is_full(tmp_path: Path) -> None:
    """A real full file system: a 5 MB tmpfs in a private mount namespace (root, or CAP_SYS_ADMIN)."""
    if not _can_mount_tmpfs():
        if os.environ.get("CI"):
            pytest.fail("CI must run the full-disk test: 'unshare -m' with a tmpfs mount is not permitted here")
        pytest.skip("no permission to mount a tmpfs in a private mount namespace (unshare -m)")
    mount = tempfile.mkdtemp(prefix="moego-full-")
    program = tmp_path / "write_until_full.py"
    program.write_text(_WRITE_UNTIL_FULL)
    try:
        script = f"mount -t tmpfs -o size=5m tmpfs {mount} && {sys.executable} {program} {mount}/a.db"
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
    finally:
        os.rmdir(mount)
    assert done.stdout.strip() == "OperationalError: database or disk is full", done.stdout + done.stderr


def test_a_failed_block_reports_its_own_error_when_sqlite_rolled_back_already(tmp_path: Path) -> None:
    conn = archive.connect(tmp_path / "a.db")
    archive.ensure_db_shape(conn)
    with pytest.raises(sqlite3.OperationalError, match="^database or disk is full$"):
        with archive.transaction(conn):
            conn.execute("ROLLBACK")  # what SQLite does on its own after SQLITE_FULL in a cache spill
            raise sqlite3.OperationalError("database or disk is full")
    with archive.transaction(conn):  # and the connection is usable again
        conn.execute("INSERT INTO collector_runs (started_at, outcome, trigger) VALUES ('x', 'ok', 'collect')")
    assert conn.execute("SELECT COUNT(*) FROM collector_runs").fetchone() == (1,)


# -- item 12: a read-only copy ----------------------------------------------------------------------------


@pytest.fixture
def readonly_copy(tmp_path: Path) -> Iterator[Path]:
    """An auditor's copy: the archive file alone, mode 0444, in a folder of mode 0555."""
    source = tmp_path / "live.db"
    seed(source, datetime.now(timezone.utc))
    folder = tmp_path / "audit"
    folder.mkdir()
    copy = folder / "archive.db"
    shutil.copyfile(source, copy)
    copy.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield copy
    finally:
        folder.chmod(0o755)


def as_reader(folder: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command that may not write ``folder``. Root may write whatever the modes say, so as root the folder
    is also bind-mounted read-only in a private mount namespace (a read-only mount, as an auditor's may be)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(folder.parent), "PYTHONPATH": str(REPO)}
    command = list(args)
    if os.geteuid() == 0:
        if not _can_mount_tmpfs():
            if os.environ.get("CI"):
                pytest.fail("CI must run the read-only test: as root it needs 'unshare -m' to mount the copy read-only")
            pytest.skip("as root, a read-only copy needs a read-only bind mount (unshare -m), which is not permitted")
        quoted = " ".join(f"'{a}'" for a in args)
        command = ["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{folder}' '{folder}' && exec {quoted}"]
    return subprocess.run(command, cwd=str(cwd or folder.parent), env=env, capture_output=True, text=True, timeout=120)


def test_a_readonly_copy_opens_for_status_export_and_the_dashboard(readonly_copy: Path) -> None:
    assert readonly_copy.stat().st_mode & stat.S_IWUSR == 0
    status = as_reader(readonly_copy.parent, sys.executable, "-m", "collectors", "status", "--json", "--db",
                       str(readonly_copy))
    assert status.returncode in (0, 2), status.stderr  # read: exit 2 here only because the seed has gaps at risk
    assert {w["webhookId"] for w in json.loads(status.stdout)["webhooks"]} >= {"wh_alpha", "wh_beta"}
    export = as_reader(readonly_copy.parent, sys.executable, "-m", "collectors", "export", "--since", "2026-01-01",
                       "--until", "2027-01-01", "--out", "-", "--db", str(readonly_copy))
    assert export.returncode == 0, export.stderr
    assert len(export.stdout.splitlines()) > 10
    program = readonly_copy.parent.parent / "dashboard_run.py"
    program.write_text(_DASHBOARD_RUN)
    dashboard = as_reader(readonly_copy.parent, sys.executable, str(program), str(REPO / "dashboard" / "app.py"),
                          str(readonly_copy), cwd=REPO)  # the project folder: its .streamlit/config.toml binds loopback
    assert dashboard.returncode == 0, dashboard.stderr[-2000:]
    shown = json.loads(dashboard.stdout.strip().splitlines()[-1])
    assert shown["errors"] == [] and shown["metrics"]["Deliveries"] not in ("0", "—")
    assert sorted(p.name for p in readonly_copy.parent.iterdir()) == ["archive.db"]  # nothing written beside it


_DASHBOARD_RUN = """
import json, os, sys
os.environ["MOEGO_MONITOR_DB"] = sys.argv[2]
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60)
at.run()
print(json.dumps({"errors": [e.value for e in at.error], "metrics": {m.label: m.value for m in at.metric}}))
"""


def test_a_readonly_copy_with_unmerged_changes_says_how_to_copy(readonly_copy: Path) -> None:
    folder = readonly_copy.parent
    folder.chmod(0o755)
    (folder / "archive.db-wal").write_bytes(b"\0" * 4096)
    folder.chmod(0o555)
    status = as_reader(folder, sys.executable, "-m", "collectors", "status", "--db", str(readonly_copy))
    assert status.returncode == 1
    assert status.stderr.strip().startswith(f"Error: the archive at {readonly_copy} is read-only and archive.db-wal "
                                            "beside it holds changes not merged into it")


# -- item 14: a damaged archive ------------------------------------------------------------------------------


def test_status_fails_on_a_damaged_archive(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    seed(path, datetime.now(timezone.utc))
    code, _ = run_cli("status", "--db", str(path))
    assert code == 2  # healthy but with gaps at risk: the seed's state
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'deliveries_by_event'").fetchone()
    with open(path, "r+b") as f:  # an index the status does not read, but every collect writes
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        conn.execute("UPDATE deliveries SET event_id = event_id || 'x'")  # what every collect does: fails
    conn.close()
    code, output = run_cli("status", "--db", str(path))
    assert code == 1
    assert output.strip().startswith(f"Error: the archive at {path} is damaged (")
    assert "restore it from a backup" in output
    code, _ = run_cli("status", "--db", str(path), "--no-integrity-check")
    assert code == 2  # the quick look reads only what it reports, as before the check existed


# -- item 9: the WAL under readers ------------------------------------------------------------------------------


def test_the_wal_is_checkpointed_back_while_readers_keep_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer committing while readers read without pause: the WAL stays near the limit instead of growing with
    every page. (bench/ measures the peak against the unbounded baseline at full size.)"""
    monkeypatch.setattr(schema, "WAL_LIMIT_BYTES", 1024 * 1024)
    monkeypatch.setattr(schema, "WAL_RETRY_S", 0.0)
    path = tmp_path / "a.db"
    writer = archive.connect(path)
    archive.ensure_db_shape(writer)
    stop = threading.Event()

    def read() -> None:
        conn = archive.connect(path, readonly=True)
        while not stop.is_set():
            conn.execute("SELECT COUNT(*), MAX(length(error)) FROM collector_runs").fetchone()
        conn.close()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    peak = 0
    try:
        for _ in range(60):
            with archive.transaction(writer):
                writer.executemany("INSERT INTO collector_runs (started_at, outcome, trigger, error) "
                                   "VALUES ('x', 'ok', 'collect', ?)", [("e" * 2000,)] * 100)
            peak = max(peak, os.path.getsize(f"{path}-wal"))
    finally:
        stop.set()
        for t in readers:
            t.join()
    written = 60 * 100 * 2000
    assert peak < written / 3, f"peak WAL {peak:,} bytes for {written:,} bytes written"
    writer.close()
