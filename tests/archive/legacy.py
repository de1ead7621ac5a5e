"""Archives as moego-monitor wrote them before the payload column, and the CSV export as it was then (byte for byte).

:func:`legacy_archive` writes deliveries the way schema 2 and 3 wrote them: every field as text in its own
column (header sets as compact JSON, redacted), the rollup and the full-text index fed the same way.
:func:`legacy_csv` is the export's code before the payload column, kept verbatim: the reference the new export's
bytes are compared with.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from collectors import archive
from collectors.archive import rollups, search_index, writer
from collectors.archive.export import export_csv, filters_for_status
from collectors.models import Webhook, WebhookDelivery
from collectors.redaction import redact_headers

from tests.seed import delivery

_COLUMNS = ("id", "webhook_id", "event_type", "event_id", "request_url", "delivered_to", "request_headers",
            "request_body", "request_body_base64", "response_status", "response_headers", "response_body",
            "response_body_base64", "delivered_at", "duration_ms", "success", "error", "retry_count",
            "request_format", "response_format", "status_class", "error_class", "first_seen_at", "last_seen_at")

#: The schema version before the payload column (the migration that adds it is the next one).
BEFORE_PAYLOAD = next(i for i, step in enumerate(archive.schema._MIGRATIONS)
                      if isinstance(step, str) and "ADD COLUMN payload" in step)
#: Cells that exercise the CSV: formula starts, quotes, commas, line breaks, non-ASCII, empty.
TRICKY = ("=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "\rx", 'say "hi", then\r\nbye', "naïve — ünïcode ✓", "", "plain")


def _compact(headers: dict[str, list[str]]) -> str:
    return json.dumps(headers, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def varied_deliveries(count: int, webhooks: Sequence[str], end: datetime, *, seed: int = 3) -> list[WebhookDelivery]:
    """``count`` deliveries over the 6 hours before ``end`` with every kind of content the CSV must carry."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        tricky = TRICKY[i % len(TRICKY)]
        ok = rng.random() > 0.2
        body: bytes | None = None
        if i % 7 == 0:
            body = json.dumps({"id": f"evt_{i}", "note": tricky, "n": rng.randrange(10**9)}).encode()
        elif i % 11 == 0:
            body = bytes(rng.randrange(256) for _ in range(40))  # not UTF-8: archived as base64
        elif i % 13 == 0:
            body = tricky.encode()
        d = delivery(f"dlv_{i:06d}", webhooks[i % len(webhooks)], end - timedelta(seconds=rng.randrange(6 * 3600)),
                     success=ok, status=200 if ok else rng.choice((500, 404, 0)), duration_ms=rng.randrange(5, 40_000),
                     error="" if ok else (tricky or "context deadline exceeded"), request_body=body,
                     response_body=tricky.encode() if i % 5 == 0 else b'{"ok":true}', retry_count=0 if ok else 2)
        headers = dict(d.request_headers)
        if i % 3 == 0:
            headers["X-Custom-Token"] = [f"tok-{i}"]
        if i % 4 == 0:
            headers["Authorization"] = ["Bearer secret"]
        out.append(WebhookDelivery(**{**d.__dict__, "request_headers": headers}))
    return out


def legacy_archive(path: Path, deliveries: Sequence[WebhookDelivery], *, seen_at: datetime,
                   webhooks: Sequence[Webhook] = ()) -> None:
    """A schema-3 archive holding ``deliveries`` (and ``webhooks``), as schema 3 left it (the same deliveries as schema 2)."""
    conn = archive.connect(path)
    archive.ensure_db_shape(conn, until=BEFORE_PAYLOAD)
    # The daily status rollup's table (added by a later migration, which fills it afresh), for today's writer
    # code that keeps the rollups below; the migration to come empties and fills it again.
    conn.execute(rollups.DAILY_STATUS_DDL)
    with archive.transaction(conn):
        writer.save_webhooks(conn, webhooks, seen_at=seen_at)
    custom = {w.id: tuple(w.headers) for w in webhooks}
    rows = []
    for d in deliveries:
        row = writer.delivery_row(d, seen_at=seen_at)
        row["request_headers"] = _compact(redact_headers(d.request_headers, custom.get(d.webhook_id, ())))
        row["response_headers"] = _compact(redact_headers(d.response_headers, custom.get(d.webhook_id, ())))
        rows.append(row)
    for start in range(0, len(rows), 500):
        page = rows[start : start + 500]
        with archive.transaction(conn):
            conn.executemany(f"INSERT INTO deliveries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
                             [[r[c] for c in _COLUMNS] for r in page])
            search_index.index_saved(conn, page)
    with archive.transaction(conn):
        # The rollups as the writer kept them: what a GROUP BY over the raw rows says (today's writer compares the
        # delivery time as delivered_key, which this schema does not have yet).
        rollups.rebuild_from_raw(conn)
    assert archive.schema_version(conn) == BEFORE_PAYLOAD
    conn.execute("ANALYZE")
    conn.close()


# -- the export before the payload column, verbatim ---------------------------------------------------------------

_SELECT = (
    "SELECT id, webhook_id, event_type, event_id, delivered_at, success, response_status, status_class, error_class, "
    "duration_ms, retry_count, error, request_url, delivered_to, request_headers, response_headers, request_body, "
    "response_body, request_body_base64, response_body_base64 FROM deliveries"
)
_FORMULA_START = frozenset("=+-@\t\r")
LEGACY_HEADER = ("id", "webhook_id", "event_type", "event_id", "delivered_at", "success", "response_status",
                 "status_class", "error_class", "duration_ms", "retry_count", "error", "request_url", "delivered_to",
                 "request_headers", "response_headers", "request_body", "response_body", "request_body_encoding",
                 "response_body_encoding", "webhook_name")


def _headers_cell(text: str, secret_headers: Sequence[str]) -> str:
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError:
        return "{}"
    if not isinstance(parsed, dict):
        return "{}"
    headers = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in parsed.items()}
    return json.dumps(redact_headers(headers, secret_headers), ensure_ascii=False, sort_keys=True)


def _row(record: Sequence[Any], secret_headers: Sequence[str], names: dict[str, str]) -> list[str]:
    (did, webhook_id, event_type, event_id, delivered_at, success, status, status_class, error_class, duration,
     retries, error, request_url, delivered_to, req_headers, resp_headers, req_body, resp_body, req_b64,
     resp_b64) = record
    cells: list[str] = [
        did, webhook_id, event_type, event_id, delivered_at, "true" if success else "false", str(status),
        status_class, error_class, str(duration), str(retries), error or "", request_url, delivered_to,
        _headers_cell(req_headers, secret_headers), _headers_cell(resp_headers, secret_headers),
        req_body or "", resp_body or "", "base64" if req_b64 else "utf-8", "base64" if resp_b64 else "utf-8",
        names.get(webhook_id, ""),
    ]
    return [("'" + c if c[:1] in _FORMULA_START else c) for c in map(str, cells)]


def legacy_csv(conn: sqlite3.Connection, since: str, until: str, secret_headers: Sequence[str] = ()) -> bytes:
    """The pre-schema-3 export of every delivery in ``[since, until)`` of a schema-2 archive, as bytes."""
    out = io.StringIO(newline="")
    writer_ = csv.writer(out, lineterminator="\r\n")
    writer_.writerow(LEGACY_HEADER)
    cursor = conn.execute(f"{_SELECT} WHERE delivered_at >= ? AND delivered_at < ? ORDER BY delivered_at, id",
                          (since, until))
    names = dict(conn.execute("SELECT webhook_id, name FROM webhook_names"))
    for record in cursor:
        writer_.writerow(_row(record, secret_headers, names))
    return out.getvalue().encode("utf-8")


def legacy_detail(conn: sqlite3.Connection, delivery_id: str) -> dict[str, Any]:
    """What the detail view read for a delivery before the payload column (every column, headers parsed)."""
    cursor = conn.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    record = dict(zip([d[0] for d in cursor.description], cursor.fetchone()))
    for name in ("request_headers", "response_headers"):
        value = json.loads(record[name] or "{}")
        record[name] = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in value.items()}
    record["success"] = bool(record["success"])
    return record


def library_csv(path: Path, since: datetime, until: datetime, *, now: datetime,
                secret_headers: Sequence[str] = ()) -> bytes:
    """Today's export (:func:`collectors.archive.export.export_csv`) of the archive at ``path`` for ``[since, until)``,
    as the bytes to compare with :func:`legacy_csv`'s."""
    out = io.StringIO(newline="")
    with archive.open_archive(path, readonly=True) as conn:
        export_csv(conn, filters_for_status(since, until), out, now=now, secret_headers=tuple(secret_headers))
    return out.getvalue().encode("utf-8")
