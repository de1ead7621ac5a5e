"""Compressed payloads (the payload column) and the in-place compaction of older archives (the last migration).

What a user checks: after the upgrade the export's bytes, every detail, every search and every rollup
are those of before; the file is smaller; a compaction killed with ``kill -9`` loses and doubles
nothing, the archive reads the same while it is half done, and the next start finishes it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collectors import archive
from collectors.archive import codec, compaction, schema, writer
from collectors.archive.export import export_csv
from collectors.archive.filters import Filters
from collectors.models import format_timestamp
from dashboard import queries

from tests.archive.legacy import legacy_archive, legacy_csv, legacy_detail, varied_deliveries
from tests.seed import ALPHA, BETA, GAMMA

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SINCE, UNTIL = NOW - timedelta(days=1), NOW + timedelta(minutes=1)
SECRET = ("x-custom-token",)
WORDS = ("appointmentId", "naïve", "deadline", "hi", "evt_000007", "bye")


def export_bytes(path: Path, secret_headers: tuple[str, ...] = ()) -> bytes:
    filters = Filters(time_range="custom", since=SINCE, until=UNTIL)
    out = io.StringIO(newline="")
    with archive.open_archive(path, readonly=True) as conn:
        export_csv(conn, filters, out, now=NOW, secret_headers=secret_headers)
    return out.getvalue().encode("utf-8")


def snapshot(path: Path) -> dict:
    """Everything a reader can see that is not the CSV: searches, rollup, counts."""
    conn = sqlite3.connect(path)
    try:
        return {
            "search": {w: sorted(r[0] for r in conn.execute(
                "SELECT d.id FROM deliveries_fts f JOIN deliveries d ON d.rowid = f.rowid WHERE deliveries_fts MATCH ?",
                ('"' + w + '"',))) for w in WORDS},
            "hourly": conn.execute("SELECT * FROM delivery_hourly ORDER BY 1, 2, 3, 4, 5, 6").fetchall(),
            "ids": conn.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM deliveries").fetchone(),
        }
    finally:
        conn.close()


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A pre-upgrade (schema 3) archive of 12,000 varied deliveries, and what it reads as before any upgrade."""
    path = tmp_path_factory.mktemp("legacy") / "v2.db"
    deliveries = varied_deliveries(12_000, (ALPHA, BETA, GAMMA), NOW)
    legacy_archive(path, deliveries, seen_at=NOW)
    conn = sqlite3.connect(path)
    before = {
        "csv": legacy_csv(conn, format_timestamp(SINCE), format_timestamp(UNTIL)),
        "csv_secret": legacy_csv(conn, format_timestamp(SINCE), format_timestamp(UNTIL), SECRET),
        "detail": {d.id: legacy_detail(conn, d.id) for d in deliveries[::97]},
        "pages": conn.execute("PRAGMA page_count").fetchone()[0],
        **snapshot(path),
    }
    conn.close()
    assert before["search"]["naïve"] and before["search"]["appointmentId"]
    return path, before


def copy(path: Path, to: Path) -> Path:
    source, target = sqlite3.connect(path), sqlite3.connect(to)
    source.backup(target)
    source.close(), target.close()
    return to


def assert_reads_as_before(path: Path, before: dict) -> None:
    assert export_bytes(path) == before["csv"]
    assert export_bytes(path, SECRET) == before["csv_secret"]
    conn = archive.connect(path, readonly=True)
    for delivery_id, expected in before["detail"].items():
        got = queries.delivery(conn, delivery_id)
        assert got == {k: v for k, v in expected.items()}, delivery_id
    conn.close()
    now = snapshot(path)
    assert {k: now[k] for k in ("search", "hourly", "ids")} == {k: before[k] for k in ("search", "hourly", "ids")}


def test_an_archive_upgrades_in_place_and_reads_byte_for_byte_as_before(legacy, tmp_path: Path) -> None:
    path = copy(legacy[0], tmp_path / "a.db")
    before = legacy[1]
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION
    left = conn.execute("SELECT COUNT(*) FROM deliveries WHERE payload IS NULL OR request_body != '' "
                        "OR request_headers != ''").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert left == 0
    assert pages < before["pages"] * 0.6, (pages, before["pages"])
    assert_reads_as_before(path, before)


CHILD = """
import sys
from collectors import archive
from collectors.archive import compaction
conn = archive.connect(sys.argv[1])
archive.ensure_db_shape(conn, until=archive.schema.READABLE_FROM)
compaction.compact(conn, batch=100, on_batch=lambda p: print(p.rowid, flush=True))
print("done", flush=True)
"""


def test_a_compaction_killed_with_sigkill_loses_and_doubles_nothing_and_resumes(legacy, tmp_path: Path) -> None:
    path = copy(legacy[0], tmp_path / "k.db")
    before = legacy[1]
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    seen = [child.stdout.readline() for _ in range(5)]
    os.kill(child.pid, signal.SIGKILL)  # mid-batch: it was already compacting the next one
    child.wait(timeout=60)
    child.stdout.close()
    assert all(line.strip().isdigit() for line in seen), seen
    conn = archive.connect(path)
    done, pending = conn.execute(
        "SELECT SUM(payload IS NOT NULL AND request_body = ''), SUM(payload IS NULL) FROM deliveries").fetchone()
    assert archive.schema_version(conn) == archive.schema.READABLE_FROM and done >= 500 and pending > 0, (done, pending)
    conn.close()
    # Half done: the archive is readable and reads exactly as before.
    archive.check_readable(path)
    assert_reads_as_before(path, before)
    # The next start finishes it.
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM deliveries WHERE payload IS NULL").fetchone()[0] == 0
    conn.close()
    assert_reads_as_before(path, before)


def test_a_new_archive_trains_its_dictionary_and_reencodes_the_rows_written_before(tmp_path: Path) -> None:
    conn = archive.connect(tmp_path / "n.db")
    archive.ensure_db_shape(conn)
    deliveries = varied_deliveries(codec.TRAIN_AT + 600, (ALPHA, BETA), NOW, seed=5)
    for start in range(0, len(deliveries), 500):
        with archive.transaction(conn):
            writer.save_deliveries(conn, deliveries[start : start + 500], seen_at=NOW)
    dict_ids = {r[0] for r in conn.execute("SELECT DISTINCT unicode(CAST(substr(payload, 1, 1) AS TEXT)) FROM deliveries")}
    assert conn.execute("SELECT COUNT(*) FROM codec_dicts").fetchone()[0] == 1
    assert dict_ids == {1}
    # A second dictionary: new rows use it, every older row still reads.
    with archive.transaction(conn):
        assert codec.train(conn) == 2
        later = [replace(d, id="new_" + d.id) for d in varied_deliveries(50, (GAMMA,), NOW, seed=9)]
        writer.save_deliveries(conn, later, seen_at=NOW)
    assert conn.execute("SELECT COUNT(*) FROM deliveries WHERE substr(payload, 1, 1) = x'02'").fetchone()[0] == 50
    for d in deliveries[::50]:
        stored = codec.payload_of(conn, d.id)
        assert stored is not None and stored["request_url"] == d.request_url
        assert stored["response_body"] == d.response_body.decode("utf-8")
    # Saving the same page again changes nothing.
    with archive.transaction(conn):
        again = writer.save_deliveries(conn, deliveries[:500], seen_at=NOW)
    assert (again.new, again.updated) == (0, 0)
    conn.close()


def test_a_webhook_the_dictionary_never_saw_gets_a_new_one_once_it_has_enough_rows(tmp_path: Path) -> None:
    conn = archive.connect(tmp_path / "w.db")
    archive.ensure_db_shape(conn)
    first = varied_deliveries(codec.TRAIN_AT, (ALPHA,), NOW, seed=5)
    newcomer = [replace(d, id="g" + d.id) for d in varied_deliveries(codec.TRAIN_AT, (GAMMA,), NOW, seed=6)]
    for rows in (first, newcomer):
        for start in range(0, len(rows), 250):
            with archive.transaction(conn):
                writer.save_deliveries(conn, rows[start : start + 250], seen_at=NOW)
    trained = [json.loads(r[0]) for r in conn.execute("SELECT webhooks FROM codec_dicts ORDER BY id")]
    assert trained == [[ALPHA], [ALPHA, GAMMA]]
    for d in (first[0], newcomer[0], newcomer[-1]):
        assert codec.payload_of(conn, d.id)["request_headers"] == codec.canonical_headers(d.request_headers)
    conn.close()


def _fill(path: Path, name: str) -> float:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT 1.0 * SUM(pgsize - unused) / SUM(pgsize) FROM dbstat WHERE name = ?", (name,)).fetchone()[0]
    finally:
        conn.close()


def _backfilled(path: Path) -> sqlite3.Connection:
    """An archive of 6,000 deliveries of one webhook written as a backfill does: newest first, pages of 200."""
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    rows = sorted(varied_deliveries(6_000, (ALPHA,), NOW, seed=8), key=lambda d: d.delivered_at, reverse=True)
    for start in range(0, len(rows), 200):
        with archive.transaction(conn):
            writer.save_deliveries(conn, rows[start : start + 200], seen_at=NOW)
    return conn


def test_after_a_backfill_the_webhook_indexes_are_full_again(tmp_path: Path) -> None:
    """MoeGo lists newest first, so a backfill writes each webhook's keys in falling order: pages half empty."""
    path = tmp_path / "b.db"
    conn = _backfilled(path)
    before = _fill(path, "deliveries_by_webhook_time")
    assert not compaction.densify(conn, 5_000, threshold=6_000)
    assert compaction.densify(conn, 6_000, threshold=6_000)
    conn.close()
    after = _fill(path, "deliveries_by_webhook_time")
    assert before < 0.7 < 0.9 < after, (before, after)
    assert len(list(csv.reader(io.StringIO(export_bytes(path).decode("utf-8"), newline="")))) == 6_001


def test_a_catch_up_much_smaller_than_the_archive_leaves_its_indexes_as_they_are(tmp_path: Path) -> None:
    """A rebuild rewrites the whole archive's indexes for the pass's own rows: a pass that added less than a tenth
    of the archive's rows (a day's catch-up into a year's archive) does not rebuild, one that added more does."""
    path = tmp_path / "b.db"
    conn = _backfilled(path)  # 6,000 rows, the webhook index half empty
    before = _fill(path, "deliveries_by_webhook_time")
    segments = conn.execute("SELECT COUNT(*) FROM deliveries_fts_data").fetchone()[0]
    assert not compaction.densify(conn, 599, threshold=100)
    assert _fill(path, "deliveries_by_webhook_time") == before
    assert conn.execute("SELECT COUNT(*) FROM deliveries_fts_data").fetchone()[0] == segments
    assert compaction.densify(conn, 600, threshold=100)
    conn.close()
    assert before < 0.7 < 0.9 < _fill(path, "deliveries_by_webhook_time")


def test_densify_leaves_the_wal_within_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebuilding the indexes writes them whole into the WAL; like every other write it is checkpointed back
    afterwards (collectors.archive.schema.transaction), so the WAL does not keep the rebuilt indexes' size."""
    path = tmp_path / "b.db"
    conn = _backfilled(path)
    monkeypatch.setattr(schema, "WAL_LIMIT_BYTES", 64 * 1024)
    monkeypatch.setattr(schema, "WAL_RETRY_S", 0.0)
    assert compaction.densify(conn, 6_000, threshold=6_000)
    wal = os.path.getsize(f"{path}-wal")
    conn.close()
    assert wal <= 64 * 1024, f"the WAL holds {wal:,} bytes after densify"
