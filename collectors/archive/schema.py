"""The SQLite archive: its location, its shape, and the rules that classify what it holds.

This module owns the schema. The collector writes the archive through :mod:`collectors.archive.writer`;
readers (the CLI's status and export, the dashboard's queries) read it with plain SQL against the tables
described here, never writing. The archive is designed for
MoeGo's ceiling: 10 webhooks x 10,000 deliveries a day, about 36 million rows a year:

- ``deliveries`` holds one row per delivery log entry, upserted on its id. Every query the dashboard
  runs is bounded by the delivery time (``delivered_key``, indexed, alone and after ``webhook_id``), never a
  full scan.
  From schema 4 its bulky fields (URL, headers, bodies, formats) are one compressed ``payload``
  (:mod:`collectors.archive.codec`); read them only through that module.
- ``delivery_hourly`` is a rollup kept current by the writer: one row per webhook, UTC hour, event
  type and outcome, with counts and a latency histogram (``h00`` .. ``h21`` over
  :data:`LATENCY_BUCKET_BOUNDS_MS`). Charts over days or months read it, not the raw rows.
- ``delivery_daily``, ``delivery_hourly_status``, ``delivery_daily_status`` and ``delivery_spans``
  (:mod:`collectors.archive.rollups`): the hourly rollup per day, failures per exact response status per hour and
  per day, and the rowid range of each webhook's hour, kept by the writer too.
- ``deliveries_fts`` is an FTS5 index over request body (with payloads MoeGo sent as base64 decoded),
  response body and error; contentless (no text is stored twice) and fed by the writer a page at a
  time (:mod:`collectors.archive.search_index`; schema 1 fed it by triggers).

A delivery's ``first_seen_at`` and ``last_seen_at`` are generated columns (schema 10 on): stored as
microseconds since the epoch (``seen_us``; ``last_seen_us`` NULL when the same), rendered as the same text;
rows archived before keep their text in ``first_seen_text`` / ``last_seen_text`` until the compaction
moves it. Readers use the generated names and never see the difference.

Times are stored as fixed-width RFC 3339 UTC text with microseconds (``2025-06-30T11:58:36.740351Z``,
see :func:`collectors.models.format_timestamp`), so text order is time order and an hour is the
13-character prefix; a delivery's own time is stored as microseconds from schema 13 on and read back as that
text (:mod:`collectors.archive.when`). Secrets never enter: webhook secret tokens are reduced to a fingerprint and
secret-like header values are redacted before a row is written (:mod:`collectors.redaction`).

Connections come from :func:`connect` (or :func:`open_archive`, which closes them): plain
``sqlite3.Connection`` objects in autocommit mode, WAL and a busy timeout, so the dashboard reads while
the collector writes, and two writers wait for each other instead of failing. The file itself is guarded:

- someone else's SQLite file is refused before anything is written to it, WAL included (:func:`connect`);
- the WAL cannot grow without bound under a stream of readers: a commit that leaves it over
  :data:`WAL_LIMIT_BYTES` checkpoints it back to empty, waiting at most :data:`WAL_WAIT_MS` for readers, and
  ``journal_size_limit`` truncates it after each reset;
- a read-only copy (a backup, an auditor's copy: file or folder not writable, or a read-only mount) opens
  read-only with ``immutable=1`` where SQLite's ``mode=ro`` cannot create the WAL's ``-shm`` file;
- :func:`check_integrity` (``PRAGMA quick_check``) tells a damaged archive apart from a healthy one.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator
from urllib.request import pathname2url

from . import codec, compaction, rollups, when
from .rollups import migrate_add_daily_status, migrate_add_rollups
from .search_index import migrate_to_writer_index

__all__ = [
    "DEFAULT_DB_PATH",
    "DEMO_DB_PATH",
    "SCHEMA_VERSION",
    "READABLE_FROM",
    "Batched",
    "LATENCY_BUCKET_BOUNDS_MS",
    "HISTOGRAM_COLUMNS",
    "ArchiveError",
    "connect",
    "open_archive",
    "ensure_db_shape",
    "check_readable",
    "check_integrity",
    "transaction",
    "schema_version",
    "status_class",
    "error_class",
    "hour_of",
    "histogram_sql",
]

#: Where the archive lives unless ``--db`` or ``MOEGO_MONITOR_DB`` says otherwise.
DEFAULT_DB_PATH = Path("data") / "moego-monitor.db"
#: Where ``moego-monitor demo`` writes its own archive (never mixed into a real one).
DEMO_DB_PATH = Path("data") / "demo.db"

#: Upper bounds (inclusive, in ms) of the latency histogram's buckets; the last bucket is unbounded.
LATENCY_BUCKET_BOUNDS_MS: tuple[int, ...] = (
    10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750,
    1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000,
)
#: The rollup's histogram columns, one per bucket: ``h00`` counts durations <= 10 ms, ``h21`` > 30 s.
HISTOGRAM_COLUMNS: tuple[str, ...] = tuple(f"h{i:02d}" for i in range(len(LATENCY_BUCKET_BOUNDS_MS) + 1))

#: Busy timeout for every connection: a writer waits this long for another to finish.
BUSY_TIMEOUT_MS = 30_000

#: ``PRAGMA application_id`` of a moego-monitor archive ("MoGo"), set by schema 2.
APPLICATION_ID = 0x4D6F476F
#: Tables every moego-monitor archive has had since schema 1: a file at schema 1+ without them is someone else's.
_OUR_TABLES = frozenset({"webhooks", "deliveries", "delivery_hourly", "collector_runs", "coverage", "sync_state",
                         "redeliveries"})

#: A commit that leaves the WAL larger than this checkpoints it back to empty (``None``: never; benchmarks only).
WAL_LIMIT_BYTES: int | None = 64 * 1024 * 1024
#: How long that checkpoint waits for readers of older snapshots before giving up until :data:`WAL_RETRY_S` later.
WAL_WAIT_MS = 2_000
WAL_RETRY_S = 5.0
_wal_tried: dict[str, float] = {}


class ArchiveError(Exception):
    """The archive cannot be opened or is of a shape this version cannot use."""


def status_class(response_status: int) -> str:
    """``2xx`` .. ``5xx`` for an HTTP status, ``none`` when no response came (timeout, refused)."""
    if 100 <= response_status <= 599:
        return f"{response_status // 100}xx"
    return "none"


def error_class(success: bool, response_status: int, error: str) -> str:
    """Why a delivery failed, in the dashboard's words: ``ok``, ``timeout``, ``connection``, ``4xx``, ``5xx``, ``other``."""
    if success:
        return "ok"
    if 400 <= response_status <= 499:
        return "4xx"
    if 500 <= response_status <= 599:
        return "5xx"
    text = error.lower()
    if any(word in text for word in ("timeout", "timed out", "deadline exceeded")):
        return "timeout"
    if any(word in text for word in ("refused", "connect", "dial tcp", "no such host", "reset", "unreachable", "eof", "tls", "certificate")):
        return "connection"
    return "other"


def histogram_sql(column: str = "duration_ms") -> str:
    """SQL aggregates that count ``column`` into the latency buckets: ``SUM(...) AS h00, ..., SUM(...) AS h21``.

    This defines what the rollup's histogram columns hold; every reader that builds the same
    histogram from raw rows uses it, so raw and rolled-up numbers always agree.
    """
    parts, lower = [], None
    for name, upper in zip(HISTOGRAM_COLUMNS, [*LATENCY_BUCKET_BOUNDS_MS, None]):
        if lower is None:
            cond = f"{column} <= {upper}"
        elif upper is None:
            cond = f"{column} > {lower}"
        else:
            cond = f"{column} > {lower} AND {column} <= {upper}"
        parts.append(f"SUM({cond}) AS {name}")
        lower = upper
    return ", ".join(parts)


def hour_of(delivered_at: str) -> str:
    """The rollup's hour key of a stored timestamp: ``2025-06-30T11``."""
    return delivered_at[:13]


_HIST_DDL = ",\n    ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in HISTOGRAM_COLUMNS)

class Batched:
    """A migration that commits its own batches (resumable, see :mod:`collectors.archive.compaction`):
    it runs outside any transaction, and the schema version moves once it has returned."""

    def __init__(self, run: Callable[[sqlite3.Connection], object]) -> None:
        self.run = run


# Each migration takes the schema from version i to i+1: SQL, or a function of the connection for a step
# SQL cannot take alone (both in one transaction), or a Batched step. Append only; never edit a released one.
_MIGRATIONS: list[str | Callable[[sqlite3.Connection], None] | Batched] = [
    """
CREATE TABLE IF NOT EXISTS webhooks (
    id                 TEXT PRIMARY KEY,
    endpoint_url       TEXT NOT NULL,
    event_types        TEXT NOT NULL,          -- JSON list of names
    content_type       TEXT NOT NULL,
    is_active          INTEGER NOT NULL,
    verify_ssl         INTEGER NOT NULL,
    has_secret         INTEGER NOT NULL,       -- the token itself is never stored
    secret_fingerprint TEXT,                   -- 8 hex chars, to notice a rotation; NULL without a token
    headers            TEXT NOT NULL,          -- JSON {name: [values]}, values redacted
    retry_policy       TEXT,                   -- JSON, as MoeGo sent it
    organizations      TEXT NOT NULL,          -- JSON list of {id, type}
    created_time       TEXT,
    updated_time       TEXT,
    first_seen_at      TEXT NOT NULL,
    last_seen_at       TEXT NOT NULL,
    deleted_at         TEXT                    -- when ListWebhooks stopped returning it; its archive stays
);

CREATE TABLE IF NOT EXISTS deliveries (
    id                   TEXT PRIMARY KEY,
    webhook_id           TEXT NOT NULL,
    event_type           TEXT NOT NULL,
    event_id             TEXT NOT NULL,
    request_url          TEXT NOT NULL,
    delivered_to         TEXT NOT NULL,
    request_headers      TEXT NOT NULL,        -- JSON {name: [values]}, secret-like values redacted
    request_body         TEXT NOT NULL,        -- UTF-8 text, or base64 when request_body_base64 = 1
    request_body_base64  INTEGER NOT NULL DEFAULT 0,
    response_status      INTEGER NOT NULL,
    response_headers     TEXT NOT NULL,
    response_body        TEXT NOT NULL,
    response_body_base64 INTEGER NOT NULL DEFAULT 0,
    delivered_at         TEXT NOT NULL,        -- fixed-width RFC 3339 UTC, microseconds
    duration_ms          INTEGER NOT NULL,
    success              INTEGER NOT NULL,
    error                TEXT NOT NULL,
    retry_count          INTEGER NOT NULL,
    request_format       TEXT NOT NULL,
    response_format      TEXT NOT NULL,
    status_class         TEXT NOT NULL,        -- status_class(response_status)
    error_class          TEXT NOT NULL,        -- error_class(success, response_status, error)
    first_seen_at        TEXT NOT NULL,
    last_seen_at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (delivered_at);
CREATE INDEX IF NOT EXISTS deliveries_by_webhook_time ON deliveries (webhook_id, delivered_at);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_id);
-- Failures are few: views of failures only scale with them, not with every delivery.
CREATE INDEX IF NOT EXISTS deliveries_failed_by_time ON deliveries (delivered_at) WHERE success = 0;
-- A webhook's last success or last failure is one index seek, however long ago it was.
CREATE INDEX IF NOT EXISTS deliveries_by_webhook_outcome_time ON deliveries (webhook_id, success, delivered_at);

CREATE TABLE IF NOT EXISTS delivery_hourly (
    webhook_id    TEXT NOT NULL,
    hour          TEXT NOT NULL,               -- 'YYYY-MM-DDTHH', UTC
    event_type    TEXT NOT NULL,
    success       INTEGER NOT NULL,
    status_class  TEXT NOT NULL,
    error_class   TEXT NOT NULL,
    deliveries    INTEGER NOT NULL,
    retries       INTEGER NOT NULL,            -- sum of retry_count
    duration_sum  INTEGER NOT NULL,
    duration_max  INTEGER NOT NULL,
    __HISTOGRAM_COLUMNS__,
    PRIMARY KEY (hour, webhook_id, event_type, success, status_class, error_class)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS collector_runs (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT NOT NULL,               -- running | ok | failed | interrupted
    trigger       TEXT NOT NULL,               -- collect | schedule | dashboard | redeliver
    webhooks      INTEGER NOT NULL DEFAULT 0,
    pages         INTEGER NOT NULL DEFAULT 0,
    new_rows      INTEGER NOT NULL DEFAULT 0,
    updated_rows  INTEGER NOT NULL DEFAULT 0,
    error         TEXT                         -- one line, secrets never included
);
CREATE INDEX IF NOT EXISTS collector_runs_by_start ON collector_runs (started_at);

-- Per webhook, the half-open intervals [start, end) of delivery time known to be fully archived.
CREATE TABLE IF NOT EXISTS coverage (
    webhook_id  TEXT NOT NULL,
    start       TEXT NOT NULL,
    end         TEXT NOT NULL,
    PRIMARY KEY (webhook_id, start)
);

-- Per webhook, where an interrupted sync resumes: the chunk being read and the last committed page.
CREATE TABLE IF NOT EXISTS sync_state (
    webhook_id       TEXT PRIMARY KEY,
    last_success_at  TEXT,                     -- end of the last sync that completed for this webhook
    last_error       TEXT,
    last_error_at    TEXT,
    chunk_start      TEXT,
    chunk_end        TEXT,
    page_token       TEXT
);

CREATE TABLE IF NOT EXISTS redeliveries (
    id                INTEGER PRIMARY KEY,
    requested_at      TEXT NOT NULL,
    delivery_id       TEXT NOT NULL,           -- the entry that was redelivered
    webhook_id        TEXT NOT NULL,
    event_id          TEXT,
    outcome           TEXT NOT NULL,           -- sent | failed | skipped
    new_delivery_id   TEXT,
    new_success       INTEGER,
    new_status        INTEGER,
    error             TEXT,
    requested_by      TEXT NOT NULL,           -- who: the console user (local, an e-mail, a proxy user), bulk, cli
    batch_id          TEXT                     -- groups a bulk redelivery
);
CREATE INDEX IF NOT EXISTS redeliveries_by_time ON redeliveries (requested_at);
CREATE INDEX IF NOT EXISTS redeliveries_by_delivery ON redeliveries (delivery_id);

CREATE VIRTUAL TABLE IF NOT EXISTS deliveries_fts USING fts5(
    request_body, response_body, error, content='deliveries', content_rowid='rowid'
);
CREATE TRIGGER IF NOT EXISTS deliveries_fts_ai AFTER INSERT ON deliveries BEGIN
    INSERT INTO deliveries_fts (rowid, request_body, response_body, error)
    VALUES (new.rowid, new.request_body, new.response_body, new.error);
END;
CREATE TRIGGER IF NOT EXISTS deliveries_fts_ad AFTER DELETE ON deliveries BEGIN
    INSERT INTO deliveries_fts (deliveries_fts, rowid, request_body, response_body, error)
    VALUES ('delete', old.rowid, old.request_body, old.response_body, old.error);
END;
CREATE TRIGGER IF NOT EXISTS deliveries_fts_au AFTER UPDATE OF request_body, response_body, error ON deliveries BEGIN
    INSERT INTO deliveries_fts (deliveries_fts, rowid, request_body, response_body, error)
    VALUES ('delete', old.rowid, old.request_body, old.response_body, old.error);
    INSERT INTO deliveries_fts (rowid, request_body, response_body, error)
    VALUES (new.rowid, new.request_body, new.response_body, new.error);
END;
""".replace("__HISTOGRAM_COLUMNS__", _HIST_DDL),
    # 2: full-text search reads words inside base64 payloads; the writer feeds the index (no triggers).
    migrate_to_writer_index,
    # 3: the clock skew each run measured.
    """
-- MoeGo's clock minus this host's (seconds), measured from its Date header during the run; NULL unmeasured.
ALTER TABLE collector_runs ADD COLUMN clock_skew_s REAL;
""",
    # 4: who acted from the console (collections, test events); the file marked as a moego-monitor archive.
    """
-- Who asked for a run from the console (the audit's name of the user); NULL for the CLI and the scheduler.
ALTER TABLE collector_runs ADD COLUMN requested_by TEXT;

-- Test events asked for from the console: who sent one to which webhook, and what came of it.
CREATE TABLE IF NOT EXISTS test_events (
    id             INTEGER PRIMARY KEY,
    requested_at   TEXT NOT NULL,
    webhook_id     TEXT NOT NULL,
    event_type     TEXT,                       -- NULL: MoeGo's default
    outcome        TEXT NOT NULL,              -- sent | failed (MoeGo did not send it)
    delivery_id    TEXT,                       -- the attempt MoeGo reported
    error          TEXT,                       -- one line, secrets never included
    requested_by   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS test_events_by_time ON test_events (requested_at);

-- Marks the file as a moego-monitor archive (see connect(): someone else's database is never touched).
PRAGMA application_id = 1299138415;
""",
    # 5: bulk redeliveries as jobs that outlive the page (collectors.jobs), people's short names for webhooks,
    # and the dashboard's saved views.
    """
CREATE TABLE IF NOT EXISTS bulk_jobs (
    id                TEXT PRIMARY KEY,        -- also the batch_id of its audit rows in redeliveries
    created_at        TEXT NOT NULL,
    requested_by      TEXT NOT NULL,
    state             TEXT NOT NULL,           -- queued | running | done | cancelled | failed
    plan              TEXT NOT NULL,           -- JSON: the entries to send and those skipped (with why)
    total             INTEGER NOT NULL,        -- entries in the plan (sent + skipped)
    estimate_s        REAL,                    -- the estimate shown before it was confirmed
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    started_at        TEXT,
    finished_at       TEXT,
    lease_owner       TEXT,                    -- the worker working it; another takes over once the lease ends
    lease_until       TEXT,
    error             TEXT,                    -- one line, when the job could not go on
    sync_lines        TEXT                     -- JSON list: the re-sync's summary lines
);
CREATE INDEX IF NOT EXISTS bulk_jobs_by_state ON bulk_jobs (state, created_at);
CREATE INDEX IF NOT EXISTS redeliveries_by_batch ON redeliveries (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS webhook_names (
    webhook_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,                 -- a person's short name, shown instead of the endpoint
    set_at      TEXT NOT NULL,
    set_by      TEXT NOT NULL
);

-- Named filter sets of the dashboard, picked from its sidebar.
CREATE TABLE IF NOT EXISTS saved_views (
    name        TEXT PRIMARY KEY,
    params      TEXT NOT NULL,                 -- JSON: the view's URL query parameters {key: [values]}
    saved_at    TEXT NOT NULL,
    saved_by    TEXT NOT NULL
);
""",
    # 6: alerts and incidents (collectors/alerts/): one row per incident, its history, its notification outbox.
    """
CREATE TABLE IF NOT EXISTS incidents (
    id                INTEGER PRIMARY KEY,
    rule              TEXT NOT NULL,           -- the rule kind: success_rate, consecutive_failures, ...
    webhook_id        TEXT NOT NULL,           -- '' for a rule about the whole archive (collector_stale)
    endpoint          TEXT NOT NULL,           -- the webhook's endpoint as host+path when it opened
    state             TEXT NOT NULL,           -- open | acknowledged | snoozed | resolved
    summary           TEXT NOT NULL,           -- one line: what the rule saw at the latest pass it fired
    opened_at         TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,           -- the latest pass at which the condition held
    failures_since    TEXT,                    -- start of the failing deliveries it is about (delivery rules)
    snoozed_until     TEXT,
    last_reminded_at  TEXT,                    -- when the latest opening or reminder message was queued
    resolved_at       TEXT,
    resolved_by       TEXT,                    -- who resolved it: 'auto' when the condition cleared
    holding           INTEGER NOT NULL DEFAULT 0, -- resolved by a person while the condition still held
    channels          TEXT NOT NULL DEFAULT '[]'  -- JSON list of the channel names it notifies
);
-- One unresolved incident per rule and webhook.
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_active ON incidents (rule, webhook_id) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS incidents_by_opened ON incidents (opened_at);

CREATE TABLE IF NOT EXISTS incident_events (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    at           TEXT NOT NULL,
    action       TEXT NOT NULL,                -- opened | acknowledged | snoozed | unsnoozed | resolved | notified | notify_failed | redelivered
    actor        TEXT NOT NULL,                -- 'moego-monitor' for the rules engine, else who did it
    note         TEXT
);
CREATE INDEX IF NOT EXISTS incident_events_by_incident ON incident_events (incident_id, at);

CREATE TABLE IF NOT EXISTS incident_notifications (
    id               INTEGER PRIMARY KEY,
    incident_id      INTEGER NOT NULL REFERENCES incidents (id),
    channel          TEXT NOT NULL,            -- the channel's name in the config file (never its URL)
    kind             TEXT NOT NULL,            -- opened | reminder | resolved
    title            TEXT NOT NULL,
    body             TEXT NOT NULL,
    queued_at        TEXT NOT NULL,
    status           TEXT NOT NULL,            -- pending | sending | sent | failed | abandoned
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_attempt_at  TEXT,
    error            TEXT                      -- one line, the channel's URL never included
);
CREATE INDEX IF NOT EXISTS incident_notifications_unsent ON incident_notifications (status) WHERE status IN ('pending', 'failed');
CREATE INDEX IF NOT EXISTS incident_notifications_by_incident ON incident_notifications (incident_id);
""",
    # 7: failures per exact status per hour, and each hour's rowid span (collectors.archive.rollups).
    migrate_add_rollups,
    # 8: bulky fields compressed into one payload BLOB per delivery (collectors.archive.codec); rows
    # archived before keep their text until the compaction moves it, and read the same meanwhile.
    "ALTER TABLE deliveries ADD COLUMN payload BLOB;\n" + codec.CODEC_DDL,
    # 9: every older row compacted, batch by batch (resumable), then VACUUM.
    Batched(compaction.compact),
    # 10: failures per exact status per day, filled from the hourly ones (collectors.archive.rollups).
    migrate_add_daily_status,
    # 11: the seen times as integers (the text columns keep older rows' until step 12 moves them), generated
    # back as the same text under their old names; the state of the next step.
    compaction.SEEN_DDL,
    # 12: every row's payload keyed to its row and its seen times moved, batch by batch (resumable), the
    # full-text index merged, then VACUUM.
    Batched(compaction.compact_rows),
    # 13: the delivery time as an integer (collectors.archive.when): the text column renamed delivered_text (older
    # rows keep their time there until step 14 moves it), delivered_us beside it, delivered_key (what the time
    # indexes hold) and delivered_at (the same text as before) generated from them.
    when.DELIVERED_DDL,
    # 14: the time indexes rebuilt on delivered_key, every row's time moved into delivered_us, batch by batch
    # (resumable), then VACUUM.
    Batched(when.move_delivered),
    # 15: delivery_hourly per UTC day, filled from the hours (collectors.archive.rollups); readers of an archive
    # before it read the same numbers from the hours (dashboard.stats.aggregate).
    rollups.migrate_add_daily,
]

#: The schema version this code writes and reads.
SCHEMA_VERSION = len(_MIGRATIONS)
#: The compactions (Batched steps) run last, so that an archive one is working on reads as before: from the
#: first on, no step changes what readers see (names, values), only how rows are stored. A step added later
#: goes after them only if it keeps that true: schema 10's daily status rollup and schema 15's daily rollup are
#: faster roads to numbers readers also get without them (``dashboard.queries.failures_by_status`` and
#: ``dashboard.stats.aggregate`` read the hours while they are missing); schema 11's seen times keep their names as
#: generated columns; schema 13's delivery time keeps its name as a generated column, and a read-only connection
#: to an archive before it reads ``delivered_key`` from a temporary view (:func:`collectors.archive.when.read_older`).
COMPACTION_STEP = max(i for i, step in enumerate(_MIGRATIONS) if isinstance(step, Batched))
assert all(callable(step) and not isinstance(step, Batched) for step in _MIGRATIONS[COMPACTION_STEP + 1:]), (
    "a step after the last compaction only adds what readers can do without (a function, not DDL that renames)")
#: The oldest schema version this code reads as well: an archive from this version on is being compacted,
#: and reads exactly the same meanwhile (before schema 13, through :func:`collectors.archive.when.read_older`).
READABLE_FROM = next(i for i, step in enumerate(_MIGRATIONS) if isinstance(step, Batched))


class WritingConnection(sqlite3.Connection):
    """A writable archive connection: a plain one that other objects can hold weak references to (the writer's
    per-connection :class:`collectors.archive.codec.Codec`, which lives as long as the connection)."""


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the archive at ``path`` (creating its folder), in WAL mode with a busy timeout.

    A non-empty file that is not a moego-monitor archive (another application's SQLite database, or not
    SQLite at all) raises :class:`ArchiveError` before anything is written to it: no table, no WAL switch.
    ``readonly=True`` opens it for reading only (status, export, the dashboard), and fails with
    :class:`ArchiveError` when the file does not exist yet; a copy nobody may write opens ``immutable``
    (see the module docstring). The connection is in autocommit mode: writes go through
    :func:`transaction`. The caller closes it (or uses :func:`open_archive`).
    """
    path = Path(path)
    try:
        if readonly:
            if not path.exists():
                raise ArchiveError(_missing(path))
            conn = _open_readonly(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            refuse_foreign(path)
            # Autocommit mode: transactions are explicit (see transaction()), never opened behind our back.
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None,
                                   factory=WritingConnection)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if WAL_LIMIT_BYTES is not None:
                conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if readonly:
            when.read_older(conn)
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"cannot open the archive at {path}: {exc}") from exc
    return conn


def _uri(path: Path, options: str) -> str:
    return f"file:{pathname2url(str(path.absolute()))}?{options}"


def _writable(path: Path) -> bool:
    """Whether this process may write the file and its folder (``False`` on a read-only mount, even for root)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _open_readonly(path: Path) -> sqlite3.Connection:
    """``mode=ro``; where that cannot work because nothing may be written beside the file (SQLite needs a
    ``-shm`` file to read a WAL database), ``immutable=1``, which reads the file as it is."""
    conn = sqlite3.connect(_uri(path, "mode=ro"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=False, isolation_level=None)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # SQLite opens lazily: fail here, not later
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if _writable(path):
            raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ArchiveError(f"{path} is not a moego-monitor archive ({exc}): point --db or MOEGO_MONITOR_DB at the "
                           "archive") from None
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise ArchiveError(f"the archive at {path} is read-only and {wal.name} beside it holds changes not merged into "
                           "it, which a read-only copy cannot apply: copy the archive with "
                           f"'sqlite3 <archive> \".backup {path.name}\"' instead of copying its files")
    return sqlite3.connect(_uri(path, "mode=ro&immutable=1"), uri=True, check_same_thread=False, isolation_level=None)


def _identify(conn: sqlite3.Connection) -> tuple[str, str]:
    """``("empty" | "ours" | "foreign", what it holds)`` for an open SQLite file, by its header and tables."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = schema_version(conn)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite%'")}
    tables = sorted(row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"))
    shown = ", ".join(t[:40] for t in tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
    holds = f"it holds the tables {shown}" if tables else "it holds no tables"
    if app_id not in (0, APPLICATION_ID):
        return "foreign", f"SQLite application id {app_id:#x}, {holds}"
    if not names and version == 0:
        return "empty", holds
    if version >= 1 and _OUR_TABLES <= names:
        return "ours", holds
    return "foreign", holds


def refuse_foreign(path: Path) -> None:
    """Raise :class:`ArchiveError` when ``path`` is a non-empty file that is not a moego-monitor archive,
    having read it read-only: nothing in it or beside it is changed (call it before making a lock file)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        probe = sqlite3.connect(_uri(path, "mode=ro"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error:
        return  # cannot even open it: the real open below reports why
    try:
        kind, holds = _identify(probe)
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc):
            return
        kind, holds = "foreign", str(exc)
    finally:
        probe.close()
    if kind == "foreign":
        raise ArchiveError(f"{path} is not a moego-monitor archive ({holds}): nothing was changed in it; point --db "
                           "or MOEGO_MONITOR_DB at the archive, or at a new file to start one")

def _missing(path: Path) -> str:
    """The line for an archive that does not exist: after ``make demo``, point at the demo's archive."""
    if path == DEFAULT_DB_PATH and DEMO_DB_PATH.exists():
        return (f"no archive at {path}; the demo's archive is {DEMO_DB_PATH}: use --db {DEMO_DB_PATH} "
                f"(or MOEGO_MONITOR_DB={DEMO_DB_PATH}), or run 'moego-monitor collect' to start your own")
    return f"no archive at {path}: run 'moego-monitor collect' first"


@contextmanager
def open_archive(path: str | Path, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """:func:`connect` for the length of a ``with`` block; the connection is closed when it ends."""
    conn = connect(path, readonly=readonly)
    try:
        yield conn
    finally:
        conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is still open. SQLite may have rolled back already (a full disk, an I/O error): then
    there is nothing to do, and the error that caused it is the one to report, not "no transaction is active"."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, rolled back if it raises.

    Taking the write lock up front means a second writer waits (busy timeout) at the start rather
    than failing halfway. The error that ended the block (``database or disk is full``...) is the one
    raised, whatever the rollback finds. After the commit the WAL is kept in bounds (module docstring).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    _bound_wal(conn)


def _bound_wal(conn: sqlite3.Connection) -> None:
    """Checkpoint the WAL back to empty when a commit left it over :data:`WAL_LIMIT_BYTES`.

    ``wal_checkpoint(TRUNCATE)`` waits (at most :data:`WAL_WAIT_MS`) for readers of older snapshots to
    finish; readers that start meanwhile read the checkpointed file and do not hold it up. If readers
    outlast the wait (a long export), the WAL is left as it is and tried again :data:`WAL_RETRY_S` later.
    """
    if WAL_LIMIT_BYTES is None:
        return
    row = conn.execute("PRAGMA database_list").fetchone()
    if not row or not row[2]:
        return
    wal = row[2] + "-wal"
    try:
        if os.stat(wal).st_size <= WAL_LIMIT_BYTES:
            return
    except OSError:
        return
    now = time.monotonic()
    if now - _wal_tried.get(wal, -WAL_RETRY_S) < WAL_RETRY_S:
        return
    _wal_tried[wal] = now
    conn.execute(f"PRAGMA busy_timeout={WAL_WAIT_MS}")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.OperationalError:
        pass  # busy: the next commit past the retry interval tries again
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def check_readable(path: str | Path) -> None:
    """Raise :class:`ArchiveError` (one line: what is wrong, what to do) unless ``path`` is an archive
    this version can read: it exists, is a SQLite file of moego-monitor's, and has a schema from
    :data:`READABLE_FROM` to :data:`SCHEMA_VERSION` (an archive being compacted reads as usual).
    """
    path = Path(path)
    try:
        with open_archive(path, readonly=True) as conn:
            kind, holds = _identify(conn)
            version = schema_version(conn)
    except sqlite3.Error as exc:
        raise ArchiveError(
            f"{path} is not a moego-monitor archive ({exc}): point --db or MOEGO_MONITOR_DB at the archive"
        ) from None
    if kind == "foreign":
        raise ArchiveError(f"{path} is not a moego-monitor archive ({holds}): point --db or MOEGO_MONITOR_DB at the archive")
    if version < READABLE_FROM:
        raise ArchiveError(f"the archive at {path} is not ready (schema {version} of {SCHEMA_VERSION}): "
                           "run 'moego-monitor collect' once to prepare it")
    if version > SCHEMA_VERSION:
        raise ArchiveError(f"the archive at {path} was written by a newer moego-monitor (schema {version}): "
                           "upgrade moego-monitor")


def check_integrity(conn: sqlite3.Connection, path: str | Path) -> None:
    """Raise :class:`ArchiveError` when SQLite finds the archive damaged (``PRAGMA quick_check``: every page,
    index and constraint checked without comparing indexes to their tables; it reads the whole file once)."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        first = " ".join(str(problems[0]).split())[:200]
        raise ArchiveError(f"the archive at {path} is damaged ({first}): collections fail on it; restore it from a "
                           "backup, or keep what is readable with 'sqlite3 <archive> .recover | sqlite3 <new file>'")


def schema_version(conn: sqlite3.Connection) -> int:
    """The archive's schema version (``PRAGMA user_version``); 0 for a new file."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def ensure_db_shape(conn: sqlite3.Connection, *, on_migrate: Callable[[int], None] | None = None,
                    until: int = SCHEMA_VERSION) -> None:
    """Bring the archive to :data:`SCHEMA_VERSION` (or ``until``, for tests of a migration), applying each
    missing migration in one transaction; a :class:`Batched` one commits batch by batch, resumably.

    Idempotent: on an archive already at the current version it does nothing. An archive written by a
    newer version of moego-monitor raises :class:`ArchiveError` rather than being touched.
    """
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise ArchiveError(
            f"the archive has schema version {current}, newer than this moego-monitor ({SCHEMA_VERSION}): upgrade moego-monitor"
        )
    for version in range(current, min(until, SCHEMA_VERSION)):
        step = _MIGRATIONS[version]
        if isinstance(step, Batched):
            step.run(conn)
            with transaction(conn):
                if conn.execute("PRAGMA user_version").fetchone()[0] == version:
                    conn.execute(f"PRAGMA user_version={version + 1}")
            if on_migrate:
                on_migrate(version + 1)
            continue
        with transaction(conn):
            # Read again inside the write lock: another process may have migrated meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] > version:
                continue
            if callable(step):
                step(conn)
            else:
                for statement in _split_sql(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version + 1}")
        if on_migrate:
            on_migrate(version + 1)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
