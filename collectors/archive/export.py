"""CSV export of archived deliveries, streamed: memory stays bounded however many rows there are.

:func:`export_csv` writes the deliveries a :class:`~collectors.archive.filters.Filters` selects to a text
stream, reading the archive with ``fetchmany`` (never all rows at once) in delivery-time order.
:func:`write_export` writes a file and, beside it, ``<file>.manifest.json`` for an auditor: the
filters, the row count, the columns, when it was made and the SHA-256 of the CSV's bytes.

The CSV is UTF-8, comma-separated, ``\\r\\n`` line ends, a header row, then one row per delivery with
these columns (:data:`COLUMNS`):

- ``id``: the delivery log entry's id
- ``webhook_id``, ``event_type``, ``event_id``
- ``delivered_at``: RFC 3339 UTC with microseconds
- ``success``: ``true`` or ``false`` (true only for a 2xx answer)
- ``response_status``: the HTTP status, ``0`` when no response came
- ``status_class``: ``2xx`` .. ``5xx``, or ``none``
- ``error_class``: ``ok``, ``timeout``, ``connection``, ``4xx``, ``5xx`` or ``other``
- ``duration_ms``, ``retry_count``
- ``error``: MoeGo's error message, empty on success
- ``request_url``, ``delivered_to``
- ``request_headers``, ``response_headers``: JSON ``{name: [values]}``; ``Authorization``,
  signatures and every other secret-like header redacted (again, on top of the archive's own redaction)
- ``request_body``, ``response_body``: the body text, or base64 when it is not UTF-8
- ``request_body_encoding``, ``response_body_encoding``: ``utf-8`` or ``base64``

Cells a spreadsheet would run as a formula (beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) are prefixed with ``'``, so opening the file in Excel or Sheets runs nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from .. import __version__
from ..models import format_timestamp
from ..redaction import redact_headers
from .filters import Filters, Window
from .schema import open_archive
from .where import deliveries_where

__all__ = [
    "COLUMNS",
    "COLUMN_HELP",
    "STATUS_CHOICES",
    "ExportManifest",
    "neutralize",
    "filters_for_status",
    "export_csv",
    "write_export",
    "manifest_path",
]

#: The CSV's columns, in order (documented in the module docstring).
COLUMNS: tuple[str, ...] = (
    "id", "webhook_id", "event_type", "event_id", "delivered_at", "success", "response_status", "status_class",
    "error_class", "duration_ms", "retry_count", "error", "request_url", "delivered_to", "request_headers",
    "response_headers", "request_body", "response_body", "request_body_encoding", "response_body_encoding",
)
#: What each column holds, in :data:`COLUMNS` order (the list above; shown by ``moego-monitor export -h``).
COLUMN_HELP: tuple[tuple[str, str], ...] = (
    ("id", "the delivery log entry's id"),
    ("webhook_id", "the webhook it was delivered for"),
    ("event_type", "the event's type, e.g. APPOINTMENT_CREATED"),
    ("event_id", "the event's id (the same for every attempt at the event)"),
    ("delivered_at", "RFC 3339 UTC with microseconds"),
    ("success", "true or false (true only for a 2xx answer)"),
    ("response_status", "the HTTP status, 0 when no response came"),
    ("status_class", "2xx .. 5xx, or none"),
    ("error_class", "ok, timeout, connection, 4xx, 5xx or other"),
    ("duration_ms", "how long the delivery took, in ms"),
    ("retry_count", "retries MoeGo made before this outcome"),
    ("error", "MoeGo's error message, empty on success"),
    ("request_url", "the endpoint URL the event was sent to"),
    ("delivered_to", "the address that answered"),
    ("request_headers", "JSON {name: [values]}, secret-like values redacted"),
    ("response_headers", "JSON {name: [values]}, secret-like values redacted"),
    ("request_body", "the body text, or base64 when it is not UTF-8"),
    ("response_body", "the body text, or base64 when it is not UTF-8"),
    ("request_body_encoding", "utf-8 or base64"),
    ("response_body_encoding", "utf-8 or base64"),
)
#: ``--status`` values: an outcome or a response status class.
STATUS_CHOICES: tuple[str, ...] = ("success", "failed", "2xx", "4xx", "5xx", "none")

_SELECT = (
    "SELECT id, webhook_id, event_type, event_id, delivered_at, success, response_status, status_class, error_class, "
    "duration_ms, retry_count, error, request_url, delivered_to, request_headers, response_headers, request_body, "
    "response_body, request_body_base64, response_body_base64 FROM deliveries"
)
_FORMULA_START = frozenset("=+-@\t\r")
_BATCH = 500


@dataclass(frozen=True)
class ExportManifest:
    """What an export holds, for an auditor to check the CSV against (``sha256`` of its exact bytes)."""

    rows: int
    sha256: str
    bytes: int
    columns: tuple[str, ...]
    filters: dict[str, Any]
    generated_at: str
    file: str | None = None
    generator: str = field(default=f"moego-monitor {__version__}")

    def to_json(self) -> str:
        """The manifest as pretty JSON text."""
        data = asdict(self)
        data["columns"] = list(self.columns)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def neutralize(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading ``'`` when it starts like a formula."""
    return "'" + value if value[:1] in _FORMULA_START else value


class _HashingWriter:
    """A text sink that passes text on and hashes its UTF-8 bytes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.bytes = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.hash.update(data)
        self.bytes += len(data)
        return self.out.write(text)


def _headers_cell(text: str, secret_headers: Sequence[str]) -> str:
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError:
        return "{}"
    if not isinstance(parsed, dict):
        return "{}"
    headers = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in parsed.items()}
    return json.dumps(redact_headers(headers, secret_headers), ensure_ascii=False, sort_keys=True)


def _row(record: Sequence[Any], secret_headers: Sequence[str]) -> list[str]:
    (did, webhook_id, event_type, event_id, delivered_at, success, status, status_class, error_class, duration,
     retries, error, request_url, delivered_to, req_headers, resp_headers, req_body, resp_body, req_b64,
     resp_b64) = record
    cells: list[str] = [
        did, webhook_id, event_type, event_id, delivered_at, "true" if success else "false", str(status),
        status_class, error_class, str(duration), str(retries), error or "", request_url, delivered_to,
        _headers_cell(req_headers, secret_headers), _headers_cell(resp_headers, secret_headers),
        req_body or "", resp_body or "", "base64" if req_b64 else "utf-8", "base64" if resp_b64 else "utf-8",
    ]
    return [("'" + c if c[:1] in _FORMULA_START else c) for c in map(str, cells)]


def _describe(filters: Filters, window: Window) -> dict[str, Any]:
    return {
        "since": format_timestamp(window.since),
        "until": format_timestamp(window.until),
        "webhook_ids": list(filters.webhooks),
        "event_types": list(filters.event_types),
        "outcome": filters.outcome,
        "status_classes": list(filters.status_classes),
        "search": filters.search,
    }


def export_csv(conn: sqlite3.Connection, filters: Filters, out: TextIO, *, now: datetime | None = None,
               secret_headers: Sequence[str] = ()) -> ExportManifest:
    """Write the deliveries ``filters`` select (oldest first) to ``out`` as CSV; returns the manifest.

    ``conn`` may be read-only. ``now``
    anchors a preset time range (default: the current time). Rows are read ``fetchmany`` by
    ``fetchmany`` and written one by one, so memory does not grow with the export. The manifest's
    ``sha256`` and ``bytes`` are those of the UTF-8 text written; ``file`` is left ``None``.
    """
    window = filters.window(now or datetime.now(timezone.utc))
    where = deliveries_where(filters, window.since_text, window.until_text, time_ordered=True)
    sink = _HashingWriter(out)
    # The query first: an archive that cannot be read fails before anything is written.
    cursor = conn.execute(f"{_SELECT} WHERE {where.sql} ORDER BY delivered_at, id", where.params)
    writer = csv.writer(sink, lineterminator="\r\n")
    rows = 0
    try:
        writer.writerow(COLUMNS)
        while batch := cursor.fetchmany(_BATCH):
            for record in batch:
                writer.writerow(_row(record, secret_headers))
            rows += len(batch)
    finally:
        cursor.close()
    return ExportManifest(
        rows=rows,
        sha256=sink.hash.hexdigest(),
        bytes=sink.bytes,
        columns=COLUMNS,
        filters=_describe(filters, window),
        generated_at=format_timestamp(datetime.now(timezone.utc)),
    )


def filters_for_status(since: datetime, until: datetime, webhook_ids: Iterable[str] = (),
                       status: str | None = None) -> Filters:
    """The :class:`Filters` of an export: a custom range, webhooks, and ``status`` as an outcome or a status class."""
    outcome = "all"
    classes: tuple[str, ...] = ()
    if status in ("success", "failed"):
        outcome = status
    elif status:
        if status not in STATUS_CHOICES:
            raise ValueError(f"unknown status {status!r}; use one of {', '.join(STATUS_CHOICES)}")
        classes = (status,)
    return Filters(time_range="custom", since=since, until=until, webhooks=tuple(webhook_ids), outcome=outcome,
                   status_classes=classes)


def manifest_path(csv_path: str | Path) -> Path:
    """Where the manifest of ``csv_path`` goes: ``<file>.manifest.json`` beside it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + ".manifest.json")


def write_export(db_path: str | Path, since: datetime, until: datetime, webhook_ids: Iterable[str] = (),
                 status: str | None = None, out_path: str | Path = "deliveries.csv", *,
                 secret_headers: Sequence[str] = ()) -> ExportManifest:
    """Export ``[since, until)`` from the archive at ``db_path`` to ``out_path``, plus its manifest beside it.

    Opens the archive read-only (:class:`collectors.archive.ArchiveError` when there is none). The
    CSV is written to a temporary name and renamed into place, so a reader never sees half a file.
    Returns the manifest (also written as :func:`manifest_path`).
    """
    filters = filters_for_status(since, until, webhook_ids, status)
    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".partial")
    with open_archive(db_path, readonly=True) as conn:
        try:
            with open(partial, "w", encoding="utf-8", newline="") as handle:
                manifest = export_csv(conn, filters, handle, secret_headers=secret_headers)
            partial.replace(out_path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    manifest = ExportManifest(**{**asdict(manifest), "columns": COLUMNS, "file": out_path.name})
    manifest_path(out_path).write_text(manifest.to_json(), encoding="utf-8")
    return manifest

