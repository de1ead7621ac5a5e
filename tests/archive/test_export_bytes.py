"""The CSV export's exact bytes on an archive half way through its upgrade, whichever way the export runs.

What a user checks: ``moego-monitor export`` of an archive holding rows still in the old text columns
(compaction under way), rows compacted into payloads and rows written compressed by the collector gives,
byte for byte, the CSV the export wrote before payloads existed (``tests.archive.legacy.legacy_csv`` over
the same deliveries archived as text): every body shape (JSON, text, empty, non-UTF-8 as base64), quotes,
commas and line breaks, cells starting like formulas (in ids and event types too), redacted headers,
webhook names. The same bytes from the library, a file with its manifest, stdout, and worker processes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from collectors import archive
from collectors.archive import compaction, export_parallel, when, writer
from collectors.archive.export import filters_for_status, write_export
from collectors.archive.names import set_webhook_name
from collectors.cli.export import export_command
from collectors.models import format_timestamp

from tests.archive.legacy import legacy_archive, legacy_csv, library_csv, varied_deliveries
from tests.seed import ALPHA, BETA, GAMMA, delivery

#: The schema version before the keying compaction (schema 11 -> 12): keying payloads pending.
KEYING_STEP = next(i for i, step in enumerate(archive.schema._MIGRATIONS)
                   if isinstance(step, archive.schema.Batched) and step.run is compaction.compact_rows)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SINCE, UNTIL = NOW - timedelta(days=1), NOW + timedelta(minutes=1)
SECRET = ("x-custom-token",)
ROWS = 2_400 + 5 + 1_200  # every delivery below is in the window
NAMES = {ALPHA: '=Alpha, "main"', GAMMA: "gamma\r\nnight shift"}


def _tricky_heads() -> list:
    """Deliveries whose own ids, event ids and types hold what a CSV cell must quote or neutralize."""
    at = NOW - timedelta(minutes=30)
    return [
        delivery('=HYPERLINK("x")', ALPHA, at),
        delivery("dlv,comma", BETA, at + timedelta(seconds=1), event_id='evt "quoted"'),
        delivery("dlv_newline", GAMMA, at + timedelta(seconds=2), event_type="APPOINTMENT\nCREATED"),
        delivery("-1", ALPHA, at + timedelta(seconds=3), success=False, status=500, error="=cmd|' /C calc'!A0"),
        delivery("dlv_tab", BETA, at + timedelta(seconds=4), event_id="\tevt"),
    ]


def _name_webhooks(path: Path) -> None:
    conn = archive.connect(path)
    for webhook_id, name in NAMES.items():
        set_webhook_name(conn, webhook_id, name, set_by="test")
    conn.close()


class _Stop(Exception):
    pass


@pytest.fixture(scope="module", params=["text-and-payload", "unkeyed-and-keyed", "text-and-integer-time"])
def mixed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """An archive half way through one of its compactions, and the CSV bytes (without and with the extra secret
    header) the pre-payload export gives for the same deliveries archived as text:

    - ``text-and-payload``: half way through the payload compaction (schema 8): rows still in the text columns
      beside rows compacted into (unkeyed) payloads;
    - ``unkeyed-and-keyed``: half way through keying payloads to their rows (schema 11): unkeyed payloads
      beside payloads keyed by the compaction;
    - ``text-and-integer-time``: half way through moving the delivery time into an integer (schema 13): rows
      with their time as text beside rows moved, and new rows written by today's writer.
    """
    folder = tmp_path_factory.mktemp("mixed")
    first = varied_deliveries(2_400, (ALPHA, BETA, GAMMA), NOW, seed=11) + _tricky_heads()
    later = [replace(d, id="new_" + d.id) for d in varied_deliveries(1_200, (ALPHA, GAMMA), NOW, seed=12)]

    reference = folder / "reference.db"
    legacy_archive(reference, first + later, seen_at=NOW)
    _name_webhooks(reference)
    conn = sqlite3.connect(reference)
    since, until = format_timestamp(SINCE), format_timestamp(UNTIL)
    expected, expected_secret = legacy_csv(conn, since, until), legacy_csv(conn, since, until, SECRET)
    conn.close()
    assert expected.count(b"\r\n") > 3_600 and b"base64" in expected and b"'=HYPERLINK" in expected

    done = []

    def stop_after_three(progress: compaction.Progress) -> None:
        done.append(progress)
        if len(done) == 3:
            raise _Stop

    path = folder / "mixed.db"
    if request.param == "text-and-payload":
        legacy_archive(path, first + later, seen_at=NOW)
        _name_webhooks(path)
        conn = archive.connect(path)
        archive.ensure_db_shape(conn, until=archive.schema.READABLE_FROM)  # the payload column; compaction pending
        with pytest.raises(_Stop):
            compaction.compact(conn, batch=300, on_batch=stop_after_three)
        text_rows, payload_rows = conn.execute(
            "SELECT SUM(payload IS NULL), SUM(payload IS NOT NULL) FROM deliveries").fetchone()
        conn.close()
        assert text_rows > 1_000 and payload_rows >= 900, (text_rows, payload_rows)
        return path, expected, expected_secret

    if request.param == "text-and-integer-time":
        legacy_archive(path, first, seen_at=NOW)
        _name_webhooks(path)
        conn = archive.connect(path)
        archive.ensure_db_shape(conn, until=archive.schema.COMPACTION_STEP)  # the integer column; moving times pending
        for start in range(0, len(later), 500):
            with archive.transaction(conn):
                writer.save_deliveries(conn, later[start : start + 500], seen_at=NOW)
        with pytest.raises(_Stop):
            when.move_delivered(conn, batch=300, on_batch=stop_after_three)
        text, moved, written = conn.execute(
            "SELECT SUM(delivered_text != ''), SUM(delivered_text = '' AND id NOT LIKE 'new_%'), "
            "SUM(id LIKE 'new_%' AND delivered_text = '' AND delivered_us IS NOT NULL) FROM deliveries").fetchone()
        conn.close()
        assert text > 1_000 and moved >= 900 and written == 1_200, (text, moved, written)
        return path, expected, expected_secret

    legacy_archive(path, first + later, seen_at=NOW)
    _name_webhooks(path)
    conn = archive.connect(path)
    archive.ensure_db_shape(conn, until=KEYING_STEP)  # payloads, unkeyed; keying them pending
    with pytest.raises(_Stop):
        compaction.compact_rows(conn, batch=300, on_batch=stop_after_three)
    pending, keyed, written = conn.execute(
        "SELECT SUM(first_seen_text != ''), SUM(first_seen_text = '' AND id NOT LIKE 'new_%'), SUM(id LIKE 'new_%') "
        "FROM deliveries").fetchone()
    conn.close()
    assert pending > 1_000 and keyed >= 900 and written == 1_200, (pending, keyed, written)
    return path, expected, expected_secret


def _library_bytes(path: Path, secret_headers: tuple[str, ...] = ()) -> bytes:
    return library_csv(path, SINCE, UNTIL, now=NOW, secret_headers=secret_headers)


def test_a_half_compacted_archive_exports_the_bytes_it_exported_before_payloads(mixed) -> None:
    path, expected, expected_secret = mixed
    assert _library_bytes(path) == expected
    assert _library_bytes(path, SECRET) == expected_secret


def test_the_file_its_manifest_and_stdout_hold_those_bytes(mixed, tmp_path: Path) -> None:
    path, expected, _ = mixed
    target = tmp_path / "out.csv"
    manifest = write_export(path, SINCE, UNTIL, out_path=target)
    assert target.read_bytes() == expected
    assert manifest.sha256 == hashlib.sha256(expected).hexdigest() and manifest.bytes == len(expected)
    assert manifest.rows == ROWS
    result = CliRunner().invoke(export_command, ["--since", format_timestamp(SINCE), "--until", format_timestamp(UNTIL),
                                                 "--out", "-", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected
    assert f"exported {manifest.rows:,} deliveries (sha256 {manifest.sha256})" in result.stderr


def test_an_export_built_by_worker_processes_writes_the_same_bytes(mixed, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected, expected_secret = mixed
    monkeypatch.setattr(export_parallel, "SLICE_ROWS", 150)
    monkeypatch.setattr(export_parallel, "PARALLEL_FROM", 300)
    monkeypatch.setattr(export_parallel, "PIECE_BYTES", 20_000)  # several pieces per slice
    filters = filters_for_status(SINCE, UNTIL)
    with archive.open_archive(path, readonly=True) as conn:
        bounds = export_parallel.plan(conn, filters, filters.window(NOW))
    assert bounds is not None and len(bounds) > 5, bounds  # 5 slices or more: each worker builds several
    for secret, want in (((), expected), (SECRET, expected_secret)):
        target = tmp_path / "parallel.csv"
        manifest = write_export(path, SINCE, UNTIL, out_path=target, secret_headers=secret, workers=2)
        assert target.read_bytes() == want
        assert manifest.rows == ROWS


def test_a_worker_that_cannot_read_the_archive_fails_the_export_with_its_error(mixed, tmp_path: Path) -> None:
    path, _, _ = mixed
    broken = tmp_path / "broken.db"
    broken.write_bytes(path.read_bytes())
    filters = filters_for_status(SINCE, UNTIL)
    conn = sqlite3.connect(broken)
    bounds = [format_timestamp(SINCE), format_timestamp(NOW - timedelta(hours=3)), format_timestamp(UNTIL)]
    broken.write_bytes(b"not a database, not any more" * 1000)  # the workers open the file after this
    with pytest.raises(archive.ArchiveError, match="broken.db is not a moego-monitor archive"):
        list(export_parallel.pieces(conn, filters, bounds, workers=2))
    conn.close()


def test_a_worker_killed_mid_export_fails_the_export_at_once(mixed, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed (out of memory, by hand): the export says so instead of waiting for it, and stops the other."""
    path, _, _ = mixed
    monkeypatch.setattr(export_parallel, "SLICE_ROWS", 150)
    monkeypatch.setattr(export_parallel, "PARALLEL_FROM", 300)
    monkeypatch.setattr(export_parallel, "PIECE_BYTES", 20_000)
    monkeypatch.setattr(export_parallel, "_PIPE_BYTES", 4_096)  # a pipe of 1 MiB would hold all of worker 1's slices
    filters = filters_for_status(SINCE, UNTIL)
    conn = archive.connect(path, readonly=True)
    source = export_parallel.pieces(conn, filters, export_parallel.plan(conn, filters, filters.window(NOW)), workers=2)
    next(source)  # worker 0's first piece: worker 1 has most of its slices still to send
    victim = next(p for p in multiprocessing.active_children() if p.name == "moego-export-1")
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(export_parallel.ExportWorkerError, match="exit status -9"):
        for _ in source:
            pass
    conn.close()
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("moego-export")]
