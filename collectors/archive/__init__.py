"""The archive's one owner: everything that knows its tables lives in this package.

Layers of the package (each imports only those above it)::

    codec      a delivery's bulky fields as one compressed payload; the archive's zstd dictionaries
    search_index  the full-text index: what it holds (bodies with base64 payloads decoded); fed by the writer
    compaction the resumable upgrade of older rows into payloads (the last migration)
    rollups    failures per exact status per hour and per day, and each webhook-hour's rowid span
    schema     the tables, migrations, connections and the rules that classify a delivery
    rollup_delta  folds a page's new rows into the rollups
    coverage   interval arithmetic over what the collector has read
    writer     saves pages of deliveries and webhooks, with the hourly rollup and redaction
    runs       the collector's run log and its one-writer lock
    status     the read model of what is archived, pending, missing and at risk
    filters    what a reader selects (filters and window), where: their SQL
    names      people's short names for webhooks, and the label every reader shows
    views      the dashboard's saved views (named filter sets)
    search_plan   how a search reads: its matches first, or the time index with a test per row; capped counts
    csv_lines  the export's CSV lines of archived rows, built as bytes
    export_parallel  a large export built by worker processes over time slices, written in order
    export     the streaming CSV export
    audit      who asked for a test event from the console

Everything outside asks these modules, never the tables: the collector writes through
:mod:`~collectors.archive.writer`, the CLI and the dashboard read through :mod:`~collectors.archive.status`,
:mod:`~collectors.archive.export` and the dashboard's own pure queries over a connection from
:func:`open_archive`.

The archive's handle is a plain ``sqlite3.Connection`` everywhere (autocommit; transactions are explicit,
see :func:`transaction`). sqlite-utils stays installed for people, not for code: its command line is the
easiest way to look inside an archive (``sqlite-utils tables data/moego-monitor.db --counts``).
"""

from __future__ import annotations

from .schema import (
    DEFAULT_DB_PATH,
    DEMO_DB_PATH,
    HISTOGRAM_COLUMNS,
    LATENCY_BUCKET_BOUNDS_MS,
    SCHEMA_VERSION,
    ArchiveError,
    check_integrity,
    check_readable,
    connect,
    ensure_db_shape,
    error_class,
    histogram_sql,
    hour_of,
    open_archive,
    refuse_foreign,
    schema_version,
    status_class,
    transaction,
)

__all__ = [
    "DEFAULT_DB_PATH",
    "DEMO_DB_PATH",
    "SCHEMA_VERSION",
    "LATENCY_BUCKET_BOUNDS_MS",
    "HISTOGRAM_COLUMNS",
    "ArchiveError",
    "connect",
    "open_archive",
    "ensure_db_shape",
    "check_readable",
    "check_integrity",
    "refuse_foreign",
    "transaction",
    "schema_version",
    "status_class",
    "error_class",
    "hour_of",
    "histogram_sql",
]
