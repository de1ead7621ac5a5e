"""CSV export: columns, formula injection, redaction, the manifest, bounded memory, and the CLI command."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from collectors import archive
from collectors.archive import writer
from collectors.models import parse_timestamp
from collectors.cli.export import export_command, parse_bound
from collectors.cli import cli
from collectors.archive.export import COLUMN_HELP, COLUMNS, export_csv, manifest_path, neutralize, write_export
from collectors.archive.filters import Filters

from tests.seed import ALPHA, BETA, NOW, Seed, delivery

UTC = timezone.utc


def rows_of(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    assert header == list(COLUMNS)
    return [dict(zip(header, row)) for row in reader]


def test_export_writes_the_view_oldest_first(conn, seeded: Seed) -> None:
    out = io.StringIO(newline="")
    manifest = export_csv(conn, Filters(), out, now=NOW)
    rows = rows_of(out.getvalue())
    window = Filters().window(NOW)
    expected = sorted(seeded.in_window(window.since, window.until), key=lambda d: (d.delivered_at, d.id))
    assert [r["id"] for r in rows] == [d.id for d in expected]
    assert manifest.rows == len(rows) == 53
    a01 = next(r for r in rows if r["id"] == "dlv_a01")
    assert (a01["success"], a01["response_status"], a01["status_class"], a01["error_class"], a01["duration_ms"]) == (
        "false", "0", "none", "timeout", "30000")
    assert json.loads(a01["request_body"])["type"] == "APPOINTMENT_CREATED"
    assert a01["request_body_encoding"] == "utf-8"
    assert out.getvalue().endswith("\r\n")


@pytest.mark.parametrize("dangerous", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"])
def test_neutralize_prefixes_formula_starts(dangerous: str) -> None:
    assert neutralize(dangerous) == "'" + dangerous
    assert neutralize("plain " + dangerous) == "plain " + dangerous


def test_formula_cells_from_the_archive_are_neutralised(conn) -> None:
    out = io.StringIO(newline="")
    export_csv(conn, Filters(search="dlv_a02"), out, now=NOW)
    [row] = rows_of(out.getvalue())
    assert row["error"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"


def test_body_starting_like_a_formula_is_neutralised(seeded: Seed) -> None:
    db = archive.connect(seeded.path)
    with archive.transaction(db):
        writer.save_deliveries(db, [delivery("dlv_at", BETA, NOW - timedelta(minutes=2), request_body=b"@SUM(1,2)")], seen_at=NOW)
    out = io.StringIO(newline="")
    export_csv(db, Filters(search="dlv_at"), out, now=NOW)
    db.close()
    assert rows_of(out.getvalue())[0]["request_body"] == "'@SUM(1,2)"


def test_secret_headers_are_redacted_even_if_the_archive_holds_them(seeded: Seed) -> None:
    """Defence in depth: an archive row with a leaked secret (an old version, a hand edit) is redacted on export."""
    db = archive.connect(seeded.path)
    leaked = {"Authorization": ["Basic c2VjcmV0"], "X-Custom-Token": ["tok-123"], "X-Moe-Signature": ["sig"],
              "Content-Type": ["application/json"]}
    db.execute("UPDATE deliveries SET request_headers = ? WHERE id = 'dlv_a05'", (json.dumps(leaked),))
    out = io.StringIO(newline="")
    export_csv(db, Filters(search="dlv_a05"), out, now=NOW, secret_headers=("x-custom-token",))
    db.close()
    text = out.getvalue()
    assert "c2VjcmV0" not in text and "tok-123" not in text and '"sig"' not in text
    headers = json.loads(rows_of(text)[0]["request_headers"])
    assert headers == {"Authorization": ["[redacted]"], "Content-Type": ["application/json"],
                       "X-Custom-Token": ["[redacted]"], "X-Moe-Signature": ["[redacted]"]}
    response = json.loads(rows_of(text)[0]["response_headers"])
    assert response["Set-Cookie"] == ["[redacted]"]


def test_write_export_and_its_manifest(seeded: Seed, tmp_path: Path) -> None:
    target = tmp_path / "out" / "failed.csv"
    target.parent.mkdir()
    since, until = NOW - timedelta(days=1), NOW
    manifest = write_export(seeded.path, since, until, [ALPHA, BETA], "failed", target)
    data = target.read_bytes()
    written = json.loads(manifest_path(target).read_text(encoding="utf-8"))
    assert manifest_path(target).name == "failed.csv.manifest.json"
    assert written["sha256"] == hashlib.sha256(data).hexdigest() == manifest.sha256
    assert written["bytes"] == len(data)
    assert written["rows"] == 14 == len(rows_of(data.decode("utf-8")))
    assert written["columns"] == list(COLUMNS) and written["file"] == "failed.csv"
    assert written["filters"] == {"since": "2026-11-19T12:34:56.000000Z", "until": "2026-11-20T12:34:56.000000Z",
                                  "webhook_ids": [ALPHA, BETA], "event_types": [], "outcome": "failed",
                                  "status_classes": [], "search": ""}
    assert parse_timestamp(written["generated_at"]) <= datetime.now(UTC)
    assert not list(target.parent.glob("*.partial"))


def test_write_export_by_status_class(seeded: Seed, tmp_path: Path) -> None:
    manifest = write_export(seeded.path, NOW - timedelta(days=2), NOW, (), "4xx", tmp_path / "x.csv")
    assert manifest.rows == 1 and manifest.filters["status_classes"] == ["4xx"]


def test_export_memory_stays_bounded(tmp_path: Path) -> None:
    """50,000 rows (~45 MB of CSV): the peak of Python allocations stays a small fraction of the file."""
    db = archive.connect(tmp_path / "big.db")
    archive.ensure_db_shape(db)
    body = json.dumps({"payload": "x" * 600}).encode()
    for start in range(0, 50_000, 5_000):
        batch = [delivery(f"big{i:06d}", ALPHA, NOW - timedelta(seconds=10 * i + 1), request_body=body)
                 for i in range(start, start + 5_000)]
        with archive.transaction(db):
            writer.save_deliveries(db, batch, seen_at=NOW)
    db.close()
    target = tmp_path / "big.csv"
    tracemalloc.start()
    try:
        manifest = write_export(tmp_path / "big.db", NOW - timedelta(days=7), NOW + timedelta(minutes=1), (), None, target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = target.stat().st_size
    assert manifest.rows == 50_000 and size > 40_000_000
    assert peak < 4_000_000, f"peak {peak:,} bytes for a {size:,}-byte export"


def test_parse_bound() -> None:
    assert parse_bound("2026-11-01", end=False) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_bound("2026-11-01", end=True) == datetime(2026, 11, 2, tzinfo=UTC)
    assert parse_bound("2026-11-01T10:00:00+02:00", end=True) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    with pytest.raises(click.BadParameter):
        parse_bound("yesterday", end=False)
    with pytest.raises(click.BadParameter):
        parse_bound("2026-02-30", end=False)


def test_bounds_at_the_edges_of_the_calendar_are_not_tracebacks(seeded: Seed) -> None:
    assert parse_bound("9999-12-31", end=True) == datetime.max.replace(tzinfo=UTC)  # the last day has no next day
    with pytest.raises(click.BadParameter, match="outside the years 1..9999"):
        parse_bound("9999-12-31T23:00:00-05:00", end=True)
    everything = CliRunner().invoke(export_command, ["--since", "0001-01-01", "--until", "9999-12-31", "--out", "-",
                                                     "--db", str(seeded.path)])
    assert everything.exit_code == 0, everything.output
    assert f"exported {len(seeded.deliveries)} deliveries" in everything.stderr
    beyond = CliRunner().invoke(export_command, ["--since", "0001-01-01T00:00:00+05:00", "--until", "2026-11-01",
                                                 "--db", str(seeded.path)])
    assert beyond.exit_code == 2 and "outside the years 1..9999" in beyond.output
    assert "Traceback" not in beyond.output


def test_cli_writes_file_and_manifest(seeded: Seed, tmp_path: Path) -> None:
    out = tmp_path / "nov.csv"
    result = CliRunner().invoke(export_command, ["--since", "2026-11-19", "--until", "2026-11-20", "--status", "failed",
                                                 "--webhook", BETA, "--out", str(out), "--db", str(seeded.path)])
    assert result.exit_code == 0, result.output
    assert "exported 8 deliveries" in result.output
    assert len(rows_of(out.read_text(encoding="utf-8"))) == 8
    assert json.loads(manifest_path(out).read_text())["filters"]["until"] == "2026-11-21T00:00:00.000000Z"


def test_cli_streams_to_stdout_without_manifest(seeded: Seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(export_command, ["--since", "2026-10-31T00:00:00Z", "--until", "2026-11-01T00:00:00Z",
                                                 "--out", "-", "--db", str(seeded.path)])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in rows_of(result.stdout)] == [f"dlv_old{k}" for k in range(5, 0, -1)]
    assert "exported 5 deliveries" in result.stderr
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon", "--until", "2026-11-02"], "neither a date"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "must be after"),
        (["--since", "2026-11-01", "--until", "2026-11-02", "--status", "3xx"], "Invalid value for '--status'"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str, seeded: Seed) -> None:
    result = CliRunner().invoke(export_command, [*args, "--db", str(seeded.path)])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_cli_without_an_archive(tmp_path: Path) -> None:
    result = CliRunner().invoke(export_command, ["--since", "2026-11-01", "--until", "2026-11-02",
                                                 "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: no archive at {tmp_path / 'none.db'}: run 'moego-monitor collect' first"]


def _sqlite_without_tables(path: Path, version: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x)")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("out", ["file", "-"])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"this is not an SQLite file " * 40),
         "{db} is not a moego-monitor archive (file is not a database): point --db or MOEGO_MONITOR_DB at the archive"),
        (lambda p: _sqlite_without_tables(p, 0),
         "{db} is not a moego-monitor archive (it holds the tables unrelated): point --db or MOEGO_MONITOR_DB at the archive"),
        (lambda p: _sqlite_without_tables(p, archive.SCHEMA_VERSION),
         "{db} is not a moego-monitor archive (it holds the tables unrelated): point --db or MOEGO_MONITOR_DB at the archive"),
    ],
    ids=["corrupt", "no tables", "tables missing at the current version"],
)
def test_cli_on_a_broken_archive_is_one_line_saying_what_to_do(make, message: str, out: str, tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    make(db)
    target = str(tmp_path / "x.csv") if out == "file" else "-"
    result = CliRunner().invoke(export_command, ["--since", "2026-11-01", "--until", "2026-11-02", "--db", str(db),
                                                 "--out", target])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"Error: {message.format(db=db)}"]  # nothing written before it
    assert not list(tmp_path.glob("x.csv*"))


def test_cli_cannot_write_is_one_line_saying_what_to_do(seeded: Seed, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.csv"
    result = CliRunner().invoke(export_command, ["--since", "2026-11-19", "--until", "2026-11-20", "--db", str(seeded.path),
                                                 "--out", str(target)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: cannot write {target}: No such file or directory: check that its folder exists and is writable, "
        "or choose another --out"
    ]


def test_export_help_lists_every_column_with_its_meaning() -> None:
    result = CliRunner().invoke(cli, ["export", "-h"])
    assert result.exit_code == 0, result.output
    lines = [line.split(None, 1) for line in result.output.splitlines() if line.startswith("    ")]
    listed = {parts[0]: parts[1] for parts in lines if len(parts) == 2 and parts[0] in COLUMNS}
    assert list(listed) == list(COLUMNS)
    assert listed == dict(COLUMN_HELP)
    assert listed["success"] == "true or false (true only for a 2xx answer)"
    overview = CliRunner().invoke(cli, ["-h"]).output
    assert re.search(r"^  export +Export archived deliveries to CSV", overview, re.M)  # the docstring stays the short help
