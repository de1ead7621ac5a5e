"""The export's column-at-a-time path writes, byte for byte, what the export wrote before payloads existed.

:class:`collectors.archive.csv_lines.Lines` builds a batch of rows a column at a time when their payloads allow
it (keys put back, base64 bodies restored, quotes doubled and cells quoted for the whole batch) and row by row
otherwise. What a user checks is the file: an archive written by today's collector from MoeGo-shaped deliveries
(headers naming the delivery, the webhook, the event type and the time; bodies naming the event; base64
payloads; empty, plain and comma-holding bodies; a formula-like body; a URL with a comma; a webhook name to
quote) exports exactly the CSV of :func:`tests.archive.legacy.legacy_csv` over the same deliveries archived as
text, whatever the batch size, with ``--redact-header``, and when the newest rows do not carry the time.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collectors import archive
from collectors.archive import csv_lines, export_parallel, writer
from collectors.archive.export import filters_for_status
from collectors.archive.names import set_webhook_name
from collectors.models import WebhookDelivery, format_timestamp

from tests.archive.legacy import legacy_archive, legacy_csv, library_csv
from tests.seed import ALPHA, BETA, GAMMA, delivery

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SINCE, UNTIL = NOW - timedelta(days=1), NOW + timedelta(minutes=1)
ROWS = 1_200
SECRET = ("x-moe-nonce",)


def _epoch_ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def moego_like(count: int, *, timestamps_from: int | None = None) -> list[WebhookDelivery]:
    """``count`` deliveries shaped like MoeGo's, in blocks of 150 (one shape of batch each, see the module docstring).
    Rows from ``timestamps_from`` on (the newest) carry no ``X-Moe-Timestamp``."""
    out = []
    for i in range(count):
        at = NOW - timedelta(seconds=(count - i) * 7, microseconds=i * 37)
        block, hook = (i // 150) % 4, (ALPHA, BETA, GAMMA)[i % 3]
        did, eid, etype = f"dlv_{i:05d}", f"evt_{i // 2:05d}", ("APPOINTMENT_CREATED", "CUSTOMER_UPDATED")[i % 2]
        event = {"id": eid, "type": etype, "companyId": "cmp_1"}
        if block != 1 or i % 2:  # block 1: every other body names neither the event nor its type
            event["payload"] = {"customerId": str(i * 7919 % 10**8), "note": "Rex needs a bath"}
        else:
            event = {"companyId": "cmp_1", "seen": [did, did]}  # the delivery id twice
        if block in (0, 1) and i % 3 == 0:  # a base64 payload the codec stores as its text
            event["payload"] = base64.b64encode(json.dumps({"id": did, "say": 'a "quote", then'}).encode()).decode()
        body = json.dumps(event).encode()
        response = b'{"received":true}'
        url = f"https://hooks.example/{hook}"
        if block == 2 and i % 50 == 7:
            body = b"-1, said the receiver"  # a formula-like body
        if block == 2 and i % 50 == 9:
            url = "https://hooks.example/a,b"
        if block == 3:
            response = (b"", b'{"ok":true}', b"plain, text", b"line\r\nbreak", b"plain")[i % 5]
        if i % 301 == 5:
            did = f"dlv,{i}"  # a head that needs quotes: its batch goes row by row
        d = delivery(did, hook, at, event_type=etype, event_id=eid, request_body=body, response_body=response,
                     success=i % 9 != 0, status=200 if i % 9 else 503)
        headers = {**d.request_headers, "X-Moe-Webhook-ID": [hook], "X-Moe-Event-Type": [etype],
                   "X-Moe-Nonce": [str(i * 104729)], "User-Agent": ["Moego/Webhook-1.0"]}
        if timestamps_from is None or i < timestamps_from:
            headers["X-Moe-Timestamp"] = [_epoch_ms(at)]
        response_headers = {} if block == 3 and i % 2 else d.response_headers
        out.append(replace(d, request_url=url, request_headers=headers, response_headers=response_headers))
    return out


def _archives(folder: Path, deliveries: list[WebhookDelivery]) -> tuple[Path, bytes, bytes]:
    """Today's archive of ``deliveries`` and the legacy export's bytes (without and with :data:`SECRET`)."""
    reference = folder / "reference.db"
    legacy_archive(reference, deliveries, seen_at=NOW)
    path = folder / "today.db"
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    for start in range(0, len(deliveries), 400):
        with archive.transaction(conn):
            writer.save_deliveries(conn, deliveries[start : start + 400], seen_at=NOW)
    conn.close()
    for db in (reference, path):
        conn = archive.connect(db)
        set_webhook_name(conn, ALPHA, '=Front desk, "main"', set_by="test")
        conn.close()
    conn = sqlite3.connect(reference)
    since, until = format_timestamp(SINCE), format_timestamp(UNTIL)
    expected, expected_secret = legacy_csv(conn, since, until), legacy_csv(conn, since, until, SECRET)
    conn.close()
    assert expected.count(b"\r\n") > len(deliveries)  # a line each, and the line breaks of some bodies
    return path, expected, expected_secret


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    path, expected, expected_secret = _archives(tmp_path_factory.mktemp("columns"), moego_like(ROWS))
    assert b"'-1, said" in expected and b"hooks.example/a,b" in expected and b'"line\r\nbreak"' in expected
    return path, expected, expected_secret


def _export(path: Path, secret_headers: tuple[str, ...] = ()) -> bytes:
    return library_csv(path, SINCE, UNTIL, now=NOW, secret_headers=secret_headers)


class _Paths:
    """Counts the batches the column path built and those it left to the row by row path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.columns = self.by_row = 0
        columns = csv_lines.Lines._columns

        def counted(lines: csv_lines.Lines, rows):  # type: ignore[no-untyped-def]
            built = columns(lines, rows)
            if built is None:
                self.by_row += 1
            else:
                self.columns += 1
            return built

        monkeypatch.setattr(csv_lines.Lines, "_columns", counted)


@pytest.mark.parametrize("column_rows", [7, 100, None])
def test_batches_built_a_column_at_a_time_hold_the_bytes_exported_before_payloads(
        archives, column_rows: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected, _ = archives
    if column_rows is not None:
        monkeypatch.setattr(csv_lines, "_column_rows", lambda rows: column_rows)
    paths = _Paths(monkeypatch)
    assert _export(path) == expected
    # Both paths ran: the batches holding a delivery id with a comma (4 of them) row by row, every other a column
    # at a time.
    if column_rows is not None:
        assert paths.by_row == 4 and paths.columns >= 8, (paths.columns, paths.by_row)
    else:
        assert 1 <= paths.by_row <= 4 and paths.columns >= 1, (paths.columns, paths.by_row)


def test_a_redacted_header_name_gives_the_bytes_it_gave_before(archives) -> None:
    path, _, expected_secret = archives
    assert _export(path, SECRET) == expected_secret


def test_payloads_that_refer_to_the_time_though_the_newest_do_not_export_the_same(tmp_path: Path) -> None:
    """The SELECT leaves the epoch milliseconds out when the newest payloads do not use them: older batches that
    do are built row by row, with the same bytes."""
    path, expected, _ = _archives(tmp_path, moego_like(600, timestamps_from=500))
    with archive.open_archive(path, readonly=True) as conn:
        assert csv_lines.Lines(conn, (), {}).millis == "NULL"
    assert _export(path) == expected


def test_closing_a_parallel_export_before_reading_it_stops_its_workers(archives,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, _ = archives
    monkeypatch.setattr(export_parallel, "SLICE_ROWS", 100)
    monkeypatch.setattr(export_parallel, "PARALLEL_FROM", 200)
    filters = filters_for_status(SINCE, UNTIL)
    with archive.open_archive(path, readonly=True) as conn:
        bounds = export_parallel.plan(conn, filters, filters.window(NOW))
        assert bounds is not None
        source = export_parallel.pieces(conn, filters, bounds, workers=2)
        assert [p for p in multiprocessing.active_children() if p.name.startswith("moego-export")]
        source.close()
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("moego-export")]
