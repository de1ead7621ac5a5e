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

import hashlib
import json
import os
import queue
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

from .. import __version__
from ..models import format_timestamp
from . import export_parallel
from .csv_lines import BATCH, Lines, neutralize
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

#: Chunks of CSV bytes waiting for the writer thread, at most.
_QUEUED = 2
_HEADER_LINE = (",".join(COLUMNS) + "\r\n").encode("utf-8")


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


class _Sink:
    """Hashes and writes chunks of bytes on a thread of its own, in order, at most :data:`_QUEUED` waiting:
    hashing and writing release the GIL, so they overlap the reading and building of the next rows.

    ``write`` is the output's (bytes). An error it raises is raised again by the next :meth:`put` or by
    :meth:`close`; the chunks after it are dropped."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self.hash = hashlib.sha256()
        self.bytes = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._thread = threading.Thread(target=self._run, name="moego-export-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self.hash.update(chunk)
                    self.bytes += len(chunk)
                    self._write(chunk)
                except BaseException as exc:  # raised on the caller's thread (put, close)
                    self.error = exc

    def put(self, chunk: bytes) -> None:
        """Queue ``chunk`` (waits while :data:`_QUEUED` chunks wait)."""
        if self.error is not None:
            raise self.error
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait until every chunk is written; raise the writer's error, if any."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error


def _bytes_writer(out: TextIO) -> Callable[[bytes], object]:
    """How to write UTF-8 bytes to ``out``: straight to its binary buffer when it has one and encodes UTF-8
    without translating line ends (a file, stdout), else decoded as text (``io.StringIO``)."""
    buffer = getattr(out, "buffer", None)
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if buffer is not None and encoding == "utf8" and os.linesep == "\n":
        out.flush()
        return buffer.write
    return lambda data: out.write(data.decode("utf-8"))


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
               secret_headers: Sequence[str] = (), workers: int = 1) -> ExportManifest:
    """Write the deliveries ``filters`` select (oldest first) to ``out`` as CSV; returns the manifest.

    ``conn`` may be read-only. ``now`` anchors a preset time range (default: the current time). Rows are
    read ``fetchmany`` by ``fetchmany``, built into CSV bytes a batch at a time
    (:mod:`collectors.archive.csv_lines`) and handed to a thread that hashes and writes them, so memory does
    not grow with the export. ``out`` receives the bytes directly when it is a UTF-8 file or stdout, else
    text. ``workers`` above 1 builds a large export (:func:`export_parallel.plan`) in that many processes
    on the archive's file (:mod:`collectors.archive.export_parallel`; they are forked, so call it from a
    process without threads of its own, such as the CLI); the bytes are the same. The manifest's ``sha256``
    and ``bytes`` are those of the UTF-8 text written; ``file`` is left ``None``.
    """
    window = filters.window(now or datetime.now(timezone.utc))
    where = deliveries_where(filters, window.since_text, window.until_text, time_ordered=True)
    lines = Lines(conn, secret_headers, webhook_names(conn))
    select, params = lines.select()
    # The query first: an archive that cannot be read fails before anything is written.
    cursor = conn.execute(f"{select} WHERE {where.sql} ORDER BY delivered_key, id", params + where.params)
    bounds = export_parallel.plan(conn, filters, window) if workers > 1 else None
    if bounds is not None and export_parallel.database_file(conn) is not None:
        cursor.close()
        source = export_parallel.pieces(conn, filters, bounds, workers=workers, secret_headers=secret_headers)
    else:
        source = ((len(batch), lines.lines(batch)) for batch in iter(lambda: cursor.fetchmany(BATCH), []))
    sink = _Sink(_bytes_writer(out))  # after the workers started: they are forked, this thread is not for them
    rows = 0
    try:
        sink.put(_HEADER_LINE)
        for count, chunk in source:
            sink.put(chunk)
            rows += count
    finally:
        cursor.close()
        source.close()
        sink.close()
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
                 secret_headers: Sequence[str] = (), workers: int = 1) -> ExportManifest:
    """Export ``[since, until)`` from the archive at ``db_path`` to ``out_path``, plus its manifest beside it.

    Opens the archive read-only (:class:`collectors.archive.ArchiveError` when there is none). The
    CSV is written to a temporary name and renamed into place, so a reader never sees half a file.
    ``workers`` as for :func:`export_csv`. Returns the manifest (also written as :func:`manifest_path`).
    """
    filters = filters_for_status(since, until, webhook_ids, status)
    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".partial")
    with open_archive(db_path, readonly=True) as conn:
        try:
            with open(partial, "w", encoding="utf-8", newline="") as handle:
                manifest = export_csv(conn, filters, handle, secret_headers=secret_headers, workers=workers)
            partial.replace(out_path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    manifest = ExportManifest(**{**asdict(manifest), "columns": COLUMNS, "file": out_path.name})
    manifest_path(out_path).write_text(manifest.to_json(), encoding="utf-8")
    return manifest

