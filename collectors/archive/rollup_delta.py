"""Add a page's newly inserted rows to the rollups, without reading back what the hour already holds.

The rollups (``delivery_hourly``, and :mod:`collectors.archive.rollups`' ``delivery_daily``,
``delivery_hourly_status``, ``delivery_daily_status`` and ``delivery_spans``) are sums, maxima and minima over raw rows, so rows that are only *added* can be
folded in: the page's rows are grouped in Python and each group is upserted (counts and sums added,
``duration_max`` and ``rowid_max`` raised, ``rowid_min`` lowered). That keeps the writer's cost to the
page's own rows, where recomputing a (webhook, hour) reads every row the hour already holds.

Rows that *changed* (an entry MoeGo rewrote) are not for this module: the writer recomputes their
(webhook, hour) keys from the raw rows (:func:`collectors.archive.writer.refresh_hourly`), and leaves
those keys out of :func:`add_inserted`. Both ways give exactly what a ``GROUP BY`` over the raw rows
says (``assert_archive_consistent`` in the tests).
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from . import rollups
from .schema import HISTOGRAM_COLUMNS, LATENCY_BUCKET_BOUNDS_MS

__all__ = ["add_inserted"]

_N = len(HISTOGRAM_COLUMNS)
_HOURLY_KEY = ("hour", "webhook_id", "event_type", "success", "status_class", "error_class")


def _upsert_measures(table: str, key: tuple[str, ...]) -> str:
    """The upsert of ``table``'s groups (``delivery_hourly`` or ``delivery_daily``: ``key``, then the same measures):
    counts and sums added, ``duration_max`` raised."""
    return (
        f"INSERT INTO {table} ({', '.join(key)}, deliveries, retries, duration_sum, duration_max, "
        f"{', '.join(HISTOGRAM_COLUMNS)}) VALUES ({', '.join('?' for _ in range(len(key) + 4 + _N))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET deliveries = deliveries + excluded.deliveries, "
        "retries = retries + excluded.retries, duration_sum = duration_sum + excluded.duration_sum, "
        "duration_max = max(duration_max, excluded.duration_max), "
        + ", ".join(f"{c} = {c} + excluded.{c}" for c in HISTOGRAM_COLUMNS)
    )


_UPSERT_HOURLY = _upsert_measures("delivery_hourly", _HOURLY_KEY)
_UPSERT_DAILY = _upsert_measures("delivery_daily", rollups.DAILY_KEY)
_UPSERT_STATUS = (
    "INSERT INTO delivery_hourly_status (hour, webhook_id, event_type, status_class, response_status, failures) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hour, webhook_id, event_type, status_class, response_status) "
    "DO UPDATE SET failures = failures + excluded.failures"
)
_UPSERT_DAILY_STATUS = (
    "INSERT INTO delivery_daily_status (day, webhook_id, event_type, status_class, response_status, failures) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, webhook_id, event_type, status_class, response_status) "
    "DO UPDATE SET failures = failures + excluded.failures"
)
_UPSERT_SPAN = (
    "INSERT INTO delivery_spans (hour, webhook_id, rowid_min, rowid_max) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (hour, webhook_id) DO UPDATE SET rowid_min = min(rowid_min, excluded.rowid_min), "
    "rowid_max = max(rowid_max, excluded.rowid_max)"
)


def add_inserted(conn: sqlite3.Connection, rows: Sequence[Mapping[str, Any]], rowids: Mapping[str, int],
                 skip: Collection[tuple[str, str]] = ()) -> None:
    """Fold newly inserted ``rows`` (as written; ``rowids`` maps their ids to rowids) into the rollups,
    except rows whose (webhook id, hour) is in ``skip`` (keys the caller recomputes). In the page's transaction."""
    hourly: dict[tuple, list] = {}
    status: dict[tuple, int] = {}
    spans: dict[tuple[str, str], list[int]] = {}
    bounds = LATENCY_BUCKET_BOUNDS_MS
    for row in rows:
        hour, webhook_id = row["delivered_at"][:13], row["webhook_id"]
        if (webhook_id, hour) in skip:
            continue
        key = (hour, webhook_id, row["event_type"], row["success"], row["status_class"], row["error_class"])
        duration = row["duration_ms"]
        acc = hourly.get(key)
        if acc is None:
            acc = hourly[key] = [0, 0, 0, duration, *([0] * _N)]
        acc[0] += 1
        acc[1] += row["retry_count"]
        acc[2] += duration
        if duration > acc[3]:
            acc[3] = duration
        acc[4 + bisect_left(bounds, duration)] += 1
        if not row["success"]:
            skey = (hour, webhook_id, row["event_type"], row["status_class"], row["response_status"])
            status[skey] = status.get(skey, 0) + 1
        rowid = rowids[row["id"]]
        span = spans.get((hour, webhook_id))
        if span is None:
            spans[hour, webhook_id] = [rowid, rowid]
        elif rowid < span[0]:
            span[0] = rowid
        elif rowid > span[1]:
            span[1] = rowid
    conn.executemany(_UPSERT_HOURLY, [(*key, *acc) for key, acc in hourly.items()])
    if rollups.has_daily(conn):  # one sqlite_master lookup per page (~10 us)
        conn.executemany(_UPSERT_DAILY, [(*key, *acc) for key, acc in _per_day(hourly).items()])
    conn.executemany(_UPSERT_STATUS, [(*key, n) for key, n in status.items()])
    daily: dict[tuple, int] = {}
    for (hour, *rest), n in status.items():
        key = (hour[:10], *rest)
        daily[key] = daily.get(key, 0) + n
    conn.executemany(_UPSERT_DAILY_STATUS, [(*key, n) for key, n in daily.items()])
    conn.executemany(_UPSERT_SPAN, [(*key, lo, hi) for key, (lo, hi) in spans.items()])


def _per_day(hourly: Mapping[tuple, list]) -> dict[tuple, list]:
    """The hourly groups' measures summed per (day, ...) key (``duration_max`` the largest)."""
    daily: dict[tuple, list] = {}
    for (hour, *rest), acc in hourly.items():
        key = (hour[:10], *rest)
        into = daily.get(key)
        if into is None:
            daily[key] = list(acc)
            continue
        into[0] += acc[0]
        into[1] += acc[1]
        into[2] += acc[2]
        if acc[3] > into[3]:
            into[3] = acc[3]
        for i in range(4, 4 + _N):
            into[i] += acc[i]
    return daily

