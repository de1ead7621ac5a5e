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
  signatures and every other secret-like header redacted (when archived; header text archived
  before schema 5, and any holding a name given as ``secret_headers``, is redacted again)
- ``request_body``, ``response_body``: the body text, or base64 when it is not UTF-8
- ``request_body_encoding``, ``response_body_encoding``: ``utf-8`` or ``base64``
- ``webhook_name``: the webhook's short name given in the dashboard, empty when none was given

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
from . import codec
from .filters import Filters, Window
from .names import webhook_names
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
    "unknown_webhooks",
    "known_webhooks",
]

#: The CSV's columns, in order (documented in the module docstring).
COLUMNS: tuple[str, ...] = (
    "id", "webhook_id", "event_type", "event_id", "delivered_at", "success", "response_status", "status_class",
    "error_class", "duration_ms", "retry_count", "error", "request_url", "delivered_to", "request_headers",
    "response_headers", "request_body", "response_body", "request_body_encoding", "response_body_encoding",
    "webhook_name",
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
    ("webhook_name", "the webhook's short name given in the dashboard, empty when none"),
)
#: ``--status`` values: an outcome or a response status class.
STATUS_CHOICES: tuple[str, ...] = ("success", "failed", "2xx", "4xx", "5xx", "none")

_FORMULA_START = frozenset("=+-@\t\r")
_BATCH = 500


def _sql_cell(expr: str) -> str:
    """SQL for the CSV cell of the text ``expr``: neutralized (:func:`neutralize`) and quoted as
    ``csv.writer`` quotes (only when it holds a quote, a comma, CR or LF; quotes doubled)."""
    neutral = (f"(CASE WHEN substr({expr}, 1, 1) IN ('=', '+', '-', '@', char(9), char(13)) "
               f"THEN '''' || {expr} ELSE {expr} END)")
    return (f"(CASE WHEN instr({expr}, '\"') OR instr({expr}, ',') OR instr({expr}, char(10)) "
            f"OR instr({expr}, char(13)) THEN '\"' || replace({neutral}, '\"', '\"\"') || '\"' ELSE {neutral} END)")


# SQLite builds each row's CSV text around the payload (the first 12 cells and the last 2); Python adds
# the 6 payload cells, decompressed a batch at a time (collectors.archive.codec). Cells the archive derives
# (outcome, classes, timestamps) never need quoting; those MoeGo sent are checked all at once, and only a
# row where one holds a quote, comma or line break, or starts like a formula, takes the cell-by-cell path.
_FROM_MOEGO = ("id", "webhook_id", "event_type", "event_id", "COALESCE(error, '')")
_PLAIN = " || ',' || ".join([
    *_FROM_MOEGO[:4], "delivered_at", "(CASE WHEN success THEN 'true' ELSE 'false' END)",
    "CAST(response_status AS TEXT)", "status_class", "error_class", "CAST(duration_ms AS TEXT)",
    "CAST(retry_count AS TEXT)", _FROM_MOEGO[4],
])
_CAREFUL = " || ',' || ".join([
    *(_sql_cell(c) for c in _FROM_MOEGO[:4]), _sql_cell("delivered_at"),
    "(CASE WHEN success THEN 'true' ELSE 'false' END)",
    _sql_cell("CAST(response_status AS TEXT)"), _sql_cell("status_class"), _sql_cell("error_class"),
    _sql_cell("CAST(duration_ms AS TEXT)"), _sql_cell("CAST(retry_count AS TEXT)"), _sql_cell(_FROM_MOEGO[4]),
])
_ALL = " || ".join(_FROM_MOEGO)
_SPECIAL = (
    f"instr({_ALL}, '\"') OR instr({_ALL}, ',') OR instr({_ALL}, char(10)) OR instr({_ALL}, char(13)) OR "
    + " OR ".join(f"substr({c}, 1, 1) IN ('=', '+', '-', '@', char(9), char(13))" for c in _FROM_MOEGO)
    + " OR response_status < 0 OR duration_ms < 0 OR retry_count < 0"
    + " OR status_class GLOB '*[^a-z0-9]*' OR error_class GLOB '*[^a-z0-9]*'"
    + " OR typeof(response_status) != 'integer' OR typeof(duration_ms) != 'integer' OR typeof(retry_count) != 'integer'"
)
_PREFIX = f"(CASE WHEN {_SPECIAL} THEN {_CAREFUL} ELSE {_PLAIN} END)"
_SUFFIX = ("(CASE WHEN request_body_base64 THEN 'base64' ELSE 'utf-8' END) || ',' || "
           "(CASE WHEN response_body_base64 THEN 'base64' ELSE 'utf-8' END)")
#: The payload's cells, in CSV order, as positions in :data:`codec.PAYLOAD_FIELDS`.
_PAYLOAD_CELLS = tuple(codec.PAYLOAD_FIELDS.index(name) for name in (
    "request_url", "delivered_to", "request_headers", "response_headers", "request_body", "response_body"))
_HEADER_CELLS = (2, 3)
_KEYS = len(codec.KEY_COLUMNS)
_SELECT = (
    f"SELECT {_PREFIX}, {_SUFFIX}, webhook_id, payload, {', '.join(codec.KEY_COLUMNS)}, "
    f"{', '.join(codec.PAYLOAD_FIELDS[i] for i in _PAYLOAD_CELLS)} FROM deliveries"
)


def _cell(value: str) -> str:
    """One CSV cell: neutralized, then quoted as ``csv.writer`` (QUOTE_MINIMAL, CRLF) quotes it."""
    if value[:1] in _FORMULA_START:
        value = "'" + value
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


class _PayloadCells:
    """The 6 payload cells of rows as CSV text, then the webhook's short name. A payload's header sets are
    redacted already (when written) and copied; header text from a text column (archived before the payload
    column, or edited by hand) and any holding a name of ``secret_headers`` are parsed and redacted again."""

    def __init__(self, coder: codec.Codec, secret_headers: Sequence[str], names: dict[str, str]) -> None:
        self.coder = coder
        self.name_cells = {webhook_id: _cell(name) for webhook_id, name in names.items()}
        self.secret_headers = tuple(secret_headers)
        self.secret_lower = tuple(n.strip().lower() for n in secret_headers if n.strip())

    def _headers(self, text: str, from_payload: bool) -> str:
        if from_payload and not (self.secret_lower and any(n in text.lower() for n in self.secret_lower)):
            return text
        return codec.canonical_headers_text(text, self.secret_headers)

    def lines(self, batch: Sequence[Sequence[Any]]) -> str:
        """The CSV text of a batch of :data:`_SELECT` rows."""
        decode, cell, headers, names = self.coder.decode, _cell, self._headers, self.name_cells
        fast = not self.secret_lower
        lines = []
        for prefix, suffix, webhook_id, blob, *rest in batch:
            keys, texts = rest[:_KEYS], rest[_KEYS:]
            if blob is not None and fast and not any(texts):
                # Written by this version: everything in the payload, headers redacted when written.
                url, to, req_h, req_b, resp_h, resp_b, _, _ = decode(blob, keys)
                # Header sets as written: a JSON object (never a formula start), quoted unless "{}".
                req_h = '"' + req_h.replace('"', '""') + '"' if req_h != "{}" else req_h
                resp_h = '"' + resp_h.replace('"', '""') + '"' if resp_h != "{}" else resp_h
                lines.append(f"{prefix},{cell(url)},{cell(to)},{req_h},{resp_h},{cell(req_b)},{cell(resp_b)},"
                             f"{suffix},{names.get(webhook_id, '')}\r\n")
                continue
            payload = decode(blob, keys) if blob is not None else None
            cells = []
            for n, (at, text) in enumerate(zip(_PAYLOAD_CELLS, texts)):
                from_payload = not text and payload is not None
                value = payload[at] if from_payload else (text or "")  # type: ignore[index]
                if n in _HEADER_CELLS:
                    value = headers(value, from_payload)
                cells.append(cell(value))
            lines.append(f"{prefix},{','.join(cells)},{suffix},{names.get(webhook_id, '')}\r\n")
        return "".join(lines)


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


def _describe(filters: Filters, window: Window) -> dict[str, Any]:
    return {
        "since": format_timestamp(window.since),
        "until": format_timestamp(window.until),
        "webhook_ids": list(filters.webhooks),
        "event_types": list(filters.event_types),
        "outcome": filters.outcome,
        "status_classes": list(filters.status_classes),
        "search": filters.search,
        **({"status_codes": list(filters.status_codes)} if filters.status_codes else {}),
    }


def export_csv(conn: sqlite3.Connection, filters: Filters, out: TextIO, *, now: datetime | None = None,
               secret_headers: Sequence[str] = ()) -> ExportManifest:
    """Write the deliveries ``filters`` select (oldest first) to ``out`` as CSV; returns the manifest.

    ``conn`` may be read-only. ``now``
    anchors a preset time range (default: the current time). Rows are read ``fetchmany`` by
    ``fetchmany`` and written a batch at a time, so memory does not grow with the export. SQLite
    builds each row's cells but the payload's; payloads are decompressed a batch at a time, and
    header sets are copied as archived (redacted when written) unless they need redacting again. The manifest's
    ``sha256`` and ``bytes`` are those of the UTF-8 text written; ``file`` is left ``None``.
    """
    window = filters.window(now or datetime.now(timezone.utc))
    where = deliveries_where(filters, window.since_text, window.until_text, time_ordered=True)
    sink = _HashingWriter(out)
    # The query first: an archive that cannot be read fails before anything is written.
    cursor = conn.execute(f"{_SELECT} WHERE {where.sql} ORDER BY delivered_at, id", where.params)
    cells = _PayloadCells(codec.Codec(conn), secret_headers, webhook_names(conn))
    rows = 0
    try:
        csv.writer(sink, lineterminator="\r\n").writerow(COLUMNS)
        while batch := cursor.fetchmany(_BATCH):
            sink.write(cells.lines(batch))
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


def unknown_webhooks(conn: sqlite3.Connection, webhook_ids: Iterable[str]) -> list[str]:
    """The ids among ``webhook_ids`` the archive knows nothing of (no configuration, no delivery): a typo, most likely."""
    unknown = []
    for webhook_id in dict.fromkeys(webhook_ids):
        found = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = ?) OR EXISTS (SELECT 1 FROM deliveries WHERE webhook_id = ?)",
            (webhook_id, webhook_id),
        ).fetchone()[0]
        if not found:
            unknown.append(webhook_id)
    return unknown


def known_webhooks(conn: sqlite3.Connection) -> list[str]:
    """Every webhook id the archive holds a configuration for, sorted."""
    return [row[0] for row in conn.execute("SELECT id FROM webhooks ORDER BY id")]


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

