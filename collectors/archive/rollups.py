"""Small tables the writer keeps next to ``delivery_hourly``, so reads stay flat.

- ``delivery_hourly_status``: failed deliveries per UTC hour, webhook, event type, status class and exact
  HTTP response status (0 = no response).
- ``delivery_daily_status``: the same per UTC day. "Failures by response status" reads the whole days of
  a window here, the whole hours around them from the hourly table and raw failed rows only in the
  window's two partial hours: its cost follows the window's days (at most 46 hours besides them), not
  how many rows or how many kinds of failure an hour holds.
- ``delivery_daily``: ``delivery_hourly`` per UTC day (same keys and measures, ``day`` for ``hour``). A window's
  totals and breakdowns (tiles, failures by error class / event type / webhook, webhook health) read its whole
  days here, the whole hours around them from ``delivery_hourly`` and raw rows only in the two partial hours
  (:func:`dashboard.stats.aggregate`): a year costs 365 days, not 8,760 hours. Filled from the hourly rows.
- ``delivery_spans``: per UTC hour and webhook, the lowest and highest ``deliveries`` rowid delivered in
  it. A window's rowid ranges are one small read (:func:`rowid_ranges_sql`), which bound a full-text
  search to the rows of the window (:mod:`collectors.archive.search_plan`) without scanning them.

Each holds exactly what a ``GROUP BY`` over the raw rows says (``tests/collectors/conftest.py``
``assert_archive_consistent`` compares them): the writer recomputes the (webhook, hour) keys a saved
page touched, in the page's transaction (:func:`refresh`; the day of each hour from the hourly rows),
like it does ``delivery_hourly``, or adds a page's new rows (:mod:`collectors.archive.rollup_delta`). A span
only ever needs to contain its hour's rowids: a wider one costs time, never a result.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Iterable

from . import when

__all__ = ["DDL", "DAILY_STATUS_DDL", "daily_ddl", "refresh", "migrate_add_rollups", "migrate_add_daily_status",
           "migrate_add_daily", "rowid_ranges_sql", "STATUS_FROM_RAW", "DAILY_STATUS_FROM_RAW", "SPANS_FROM_RAW",
           "hourly_from_raw_sql", "daily_from_hourly_sql", "daily_from_raw_sql", "has_table", "has_daily", "DAILY_KEY"]

DDL = (
    """CREATE TABLE IF NOT EXISTS delivery_hourly_status (
    hour             TEXT NOT NULL,            -- 'YYYY-MM-DDTHH', UTC
    webhook_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    status_class     TEXT NOT NULL,
    response_status  INTEGER NOT NULL,         -- 0 = no response
    failures         INTEGER NOT NULL,
    PRIMARY KEY (hour, webhook_id, event_type, status_class, response_status)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS delivery_spans (
    hour       TEXT NOT NULL,                  -- 'YYYY-MM-DDTHH', UTC
    webhook_id TEXT NOT NULL,
    rowid_min  INTEGER NOT NULL,
    rowid_max  INTEGER NOT NULL,
    PRIMARY KEY (hour, webhook_id)
) WITHOUT ROWID""",
)

#: The daily level of the status rollup (its own migration, after the two above).
DAILY_STATUS_DDL = """CREATE TABLE IF NOT EXISTS delivery_daily_status (
    day              TEXT NOT NULL,            -- 'YYYY-MM-DD', UTC
    webhook_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    status_class     TEXT NOT NULL,
    response_status  INTEGER NOT NULL,         -- 0 = no response
    failures         INTEGER NOT NULL,
    PRIMARY KEY (day, webhook_id, event_type, status_class, response_status)
) WITHOUT ROWID"""

#: The status rollup as a GROUP BY over raw rows (what the table must equal), in its key order.
STATUS_FROM_RAW = """
    SELECT substr(delivered_at, 1, 13), webhook_id, event_type, status_class, response_status, COUNT(*)
    FROM deliveries WHERE success = 0 GROUP BY 1, 2, 3, 4, 5
"""
#: The daily status rollup as a GROUP BY over raw rows.
DAILY_STATUS_FROM_RAW = """
    SELECT substr(delivered_at, 1, 10), webhook_id, event_type, status_class, response_status, COUNT(*)
    FROM deliveries WHERE success = 0 GROUP BY 1, 2, 3, 4, 5
"""
#: The spans as a GROUP BY over raw rows.
SPANS_FROM_RAW = """
    SELECT substr(delivered_at, 1, 13), webhook_id, MIN(rowid), MAX(rowid) FROM deliveries GROUP BY 1, 2
"""



def hourly_from_raw_sql() -> str:
    """``delivery_hourly`` as a GROUP BY over raw rows (what the table must equal), in its column order:
    webhook_id, hour, event_type, success, status_class, error_class, deliveries, retries, duration_sum,
    duration_max, then the histogram columns."""
    from .schema import histogram_sql  # schema imports this module for its migrations

    return f"""
    SELECT webhook_id, substr(delivered_at, 1, 13), event_type, success, status_class, error_class,
           COUNT(*), SUM(retry_count), SUM(duration_ms), MAX(duration_ms), {histogram_sql()}
    FROM deliveries GROUP BY 1, 2, 3, 4, 5, 6
"""


#: ``delivery_daily``'s key, in its column order (``delivery_hourly``'s with ``day`` for ``hour``).
DAILY_KEY = ("day", "webhook_id", "event_type", "success", "status_class", "error_class")


def daily_ddl() -> str:
    """``CREATE TABLE delivery_daily``: ``delivery_hourly`` per UTC day, keyed in :data:`DAILY_KEY` order."""
    from .schema import HISTOGRAM_COLUMNS  # schema imports this module for its migrations

    histogram = ",\n    ".join(f"{c} INTEGER NOT NULL" for c in HISTOGRAM_COLUMNS)
    return f"""CREATE TABLE IF NOT EXISTS delivery_daily (
    day           TEXT NOT NULL,               -- 'YYYY-MM-DD', UTC
    webhook_id    TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    success       INTEGER NOT NULL,
    status_class  TEXT NOT NULL,
    error_class   TEXT NOT NULL,
    deliveries    INTEGER NOT NULL,
    retries       INTEGER NOT NULL,
    duration_sum  INTEGER NOT NULL,
    duration_max  INTEGER NOT NULL,
    {histogram},
    PRIMARY KEY ({', '.join(DAILY_KEY)})
) WITHOUT ROWID"""


def daily_from_hourly_sql(where: str = "") -> str:
    """``delivery_daily``'s rows (its column order) as a GROUP BY over the ``delivery_hourly`` rows ``where`` selects
    (all of them when empty)."""
    from .schema import HISTOGRAM_COLUMNS  # schema imports this module for its migrations

    return (f"SELECT substr(hour, 1, 10), webhook_id, event_type, success, status_class, error_class, SUM(deliveries), "
            f"SUM(retries), SUM(duration_sum), MAX(duration_max), {', '.join(f'SUM({c})' for c in HISTOGRAM_COLUMNS)} "
            f"FROM delivery_hourly {f'WHERE {where} ' if where else ''}GROUP BY 1, 2, 3, 4, 5, 6")


def daily_from_raw_sql() -> str:
    """``delivery_daily`` as a GROUP BY over raw rows (what the table must equal), in its column order."""
    from .schema import histogram_sql  # schema imports this module for its migrations

    return f"""
    SELECT substr(delivered_at, 1, 10), webhook_id, event_type, success, status_class, error_class,
           COUNT(*), SUM(retry_count), SUM(duration_ms), MAX(duration_ms), {histogram_sql()}
    FROM deliveries GROUP BY 1, 2, 3, 4, 5, 6
"""


def rebuild_from_raw(conn: sqlite3.Connection) -> None:
    """Replace every rollup (hourly, daily, hourly and daily status, spans) with what a GROUP BY over the raw rows says,
    inside the caller's transaction: for archives written in bulk, not by the writer (benchmarks, test archives
    at an older schema)."""
    from .schema import HISTOGRAM_COLUMNS  # schema imports this module for its migrations

    conn.execute("DELETE FROM delivery_hourly")
    conn.execute(f"""INSERT INTO delivery_hourly (webhook_id, hour, event_type, success, status_class, error_class,
        deliveries, retries, duration_sum, duration_max, {', '.join(HISTOGRAM_COLUMNS)}) {hourly_from_raw_sql()}""")
    if has_daily(conn):
        conn.execute("DELETE FROM delivery_daily")
        conn.execute(f"INSERT INTO delivery_daily {daily_from_hourly_sql()}")
    for table, select in (("delivery_hourly_status", STATUS_FROM_RAW), ("delivery_daily_status", DAILY_STATUS_FROM_RAW),
                          ("delivery_spans", SPANS_FROM_RAW)):
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} {select}")


_REFRESH_STATUS = """
INSERT INTO delivery_hourly_status (hour, webhook_id, event_type, status_class, response_status, failures)
SELECT ?, webhook_id, event_type, status_class, response_status, COUNT(*)
FROM deliveries WHERE webhook_id = ? AND success = 0 AND delivered_key >= ? AND delivered_key < ?
GROUP BY event_type, status_class, response_status
"""
_REFRESH_SPAN = """
INSERT INTO delivery_spans (hour, webhook_id, rowid_min, rowid_max)
SELECT ?, ?, MIN(rowid), MAX(rowid) FROM deliveries WHERE webhook_id = ? AND delivered_key >= ? AND delivered_key < ?
HAVING COUNT(*) > 0
"""


_REFRESH_DAILY_STATUS = """
INSERT INTO delivery_daily_status (day, webhook_id, event_type, status_class, response_status, failures)
SELECT ?, webhook_id, event_type, status_class, response_status, SUM(failures)
FROM delivery_hourly_status WHERE hour >= ? AND hour < ? AND webhook_id = ?
GROUP BY event_type, status_class, response_status
"""


def refresh(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Recompute the tables for each (webhook id, ``YYYY-MM-DDTHH`` hour) from the raw rows, and the day of each
    hour from its hours (``delivery_daily`` from ``delivery_hourly``: call this after the hourly rows of ``keys``
    are current). In a transaction."""
    keys = sorted(set(keys))
    for webhook_id, hour in keys:
        start, end = when.key_of(hour), when.next_hour_key(hour)  # exactly that hour's rows
        conn.execute("DELETE FROM delivery_hourly_status WHERE hour = ? AND webhook_id = ?", (hour, webhook_id))
        conn.execute(_REFRESH_STATUS, (hour, webhook_id, start, end))
        conn.execute("DELETE FROM delivery_spans WHERE hour = ? AND webhook_id = ?", (hour, webhook_id))
        conn.execute(_REFRESH_SPAN, (hour, webhook_id, webhook_id, start, end))
    daily = bool(keys) and has_daily(conn)
    for webhook_id, day in sorted({(webhook_id, hour[:10]) for webhook_id, hour in keys}):
        # A day's hours are 'YYYY-MM-DDT00' .. 'YYYY-MM-DDT23': [day + 'T', day + 'U') holds exactly those.
        conn.execute("DELETE FROM delivery_daily_status WHERE day = ? AND webhook_id = ?", (day, webhook_id))
        conn.execute(_REFRESH_DAILY_STATUS, (day, day + "T", day + "U", webhook_id))
        if daily:
            conn.execute("DELETE FROM delivery_daily WHERE day = ? AND webhook_id = ?", (day, webhook_id))
            conn.execute(_refresh_daily_sql(), (day + "T", day + "U", webhook_id))


@functools.cache
def _refresh_daily_sql() -> str:
    # A day's hours are 'YYYY-MM-DDT00' .. 'YYYY-MM-DDT23': [day + 'T', day + 'U') holds exactly those.
    return f"INSERT INTO delivery_daily {daily_from_hourly_sql('hour >= ? AND hour < ? AND webhook_id = ?')}"


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the archive has table ``name`` yet: a rollup added by a later schema (``delivery_daily_status``, 10;
    ``delivery_daily``, 15) is missing from an archive the collector has not migrated, which reads without it."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def has_daily(conn: sqlite3.Connection) -> bool:
    """Whether the archive has ``delivery_daily`` yet (schema 15 on; the steps before it write without it)."""
    return has_table(conn, "delivery_daily")


def migrate_add_rollups(conn: sqlite3.Connection) -> None:
    """Schema 4 -> 5: create both tables and fill them from the archived rows (one pass over the time index
    for the spans, the failed rows only for the status rollup)."""
    for statement in DDL:
        conn.execute(statement)
    for table, select in (("delivery_hourly_status", STATUS_FROM_RAW), ("delivery_spans", SPANS_FROM_RAW)):
        conn.execute(f"DELETE FROM {table}")  # whatever a table of the same name held, it is filled afresh
        conn.execute(f"INSERT INTO {table} {select}")


def migrate_add_daily_status(conn: sqlite3.Connection) -> None:
    """Add ``delivery_daily_status`` and fill it from ``delivery_hourly_status`` (afresh: safe to run again)."""
    conn.execute(DAILY_STATUS_DDL)
    conn.execute("DELETE FROM delivery_daily_status")
    conn.execute(
        "INSERT INTO delivery_daily_status (day, webhook_id, event_type, status_class, response_status, failures) "
        "SELECT substr(hour, 1, 10), webhook_id, event_type, status_class, response_status, SUM(failures) "
        "FROM delivery_hourly_status GROUP BY 1, 2, 3, 4, 5")


def migrate_add_daily(conn: sqlite3.Connection) -> None:
    """Schema 14 -> 15: add ``delivery_daily`` and fill it from ``delivery_hourly`` (afresh: safe to run again;
    one pass over the hourly rows, ~9,000 per webhook and year)."""
    conn.execute(daily_ddl())
    conn.execute("DELETE FROM delivery_daily")
    conn.execute(f"INSERT INTO delivery_daily {daily_from_hourly_sql()}")


def rowid_ranges_sql(webhooks: tuple[str, ...] = ()) -> str:
    """A SELECT of ``(lo, hi)`` rowid ranges that together hold every row delivered in ``[since, until)``.

    Parameters: ``(since, until, *webhooks)`` (archive timestamps or prefixes of one; the hours holding
    them are included whole). One range per webhook (the collector reads a webhook's history in its own
    pages, so each webhook's rows of a period sit together), or, when those overlap (webhooks collected
    side by side), the one range around them all. No row: no range.
    """
    where = "hour >= substr(?, 1, 13) AND hour <= substr(?, 1, 13)"
    if webhooks:
        where += f" AND webhook_id IN ({', '.join('?' for _ in webhooks)})"
    return (
        "WITH per_hook AS (SELECT MIN(rowid_min) AS lo, MAX(rowid_max) AS hi FROM delivery_spans "
        f"WHERE {where} GROUP BY webhook_id), "
        "whole AS (SELECT MIN(lo) AS lo, MAX(hi) AS hi, SUM(hi - lo + 1) AS spread FROM per_hook) "
        "SELECT lo, hi FROM whole WHERE lo IS NOT NULL AND hi - lo + 1 <= spread "
        "UNION ALL SELECT per_hook.lo, per_hook.hi FROM per_hook, whole WHERE whole.hi - whole.lo + 1 > whole.spread"
    )
