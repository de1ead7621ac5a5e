"""Coverage: which spans of delivery time are known to be fully archived, and what is at risk.

Coverage is kept per webhook as half-open intervals ``[start, end)`` of ``deliveredAt`` time (aware
UTC datetimes). An interval is recorded only once every page listing that span was committed, so
coverage never claims more than the archive holds. The pure functions here do the arithmetic; the
two storage functions at the end read and write the ``coverage`` table inside the caller's
transaction.

Terms used across the collector:

- *retention window*: ``[now - RETENTION, now)``, what MoeGo still holds (15 days).
- *watermark*: the end of the coverage that runs without a gap from the start of the retention
  window; the next sync reads from there (less an overlap). Without coverage at the window start,
  the watermark is the window start itself, so a first run reads all 15 days (the backfill), and a
  hole anywhere is re-read rather than stepped over.
- *gap*: a part of the retention window not covered.
- *at risk*: the part of a gap that MoeGo deletes within :data:`AT_RISK_HORIZON` (48 h), i.e. the
  part older than ``now - RETENTION + AT_RISK_HORIZON``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Iterable, NamedTuple


from ..models import format_timestamp, parse_timestamp

__all__ = [
    "RETENTION",
    "AT_RISK_HORIZON",
    "Interval",
    "merge",
    "add_interval",
    "clip",
    "retention_start",
    "watermark",
    "gaps",
    "at_risk",
    "load_intervals",
    "record_interval",
]

#: How long MoeGo keeps a delivery log entry.
RETENTION = timedelta(days=15)
#: A gap is at risk when MoeGo deletes (part of) it within this long.
AT_RISK_HORIZON = timedelta(hours=48)


class Interval(NamedTuple):
    """A half-open span of time ``[start, end)``; empty when ``end <= start``."""

    start: datetime
    end: datetime

    @property
    def empty(self) -> bool:
        """True when the interval holds no instant."""
        return self.end <= self.start


def merge(intervals: Iterable[Interval | tuple[datetime, datetime]]) -> list[Interval]:
    """Sorted, disjoint intervals covering the same time; touching or overlapping ones are joined, empty ones dropped."""
    ordered = sorted(Interval(*i) for i in intervals if not Interval(*i).empty)
    out: list[Interval] = []
    for current in ordered:
        if out and current.start <= out[-1].end:
            if current.end > out[-1].end:
                out[-1] = Interval(out[-1].start, current.end)
        else:
            out.append(current)
    return out


def add_interval(intervals: Iterable[Interval], new: Interval) -> list[Interval]:
    """``intervals`` with ``new`` added, merged with whatever it touches or overlaps."""
    return merge([*intervals, new])


def clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The parts of (merged) ``intervals`` inside ``[start, end)``."""
    out = []
    for interval in merge(intervals):
        part = Interval(max(interval.start, start), min(interval.end, end))
        if not part.empty:
            out.append(part)
    return out


def retention_start(now: datetime) -> datetime:
    """The oldest delivery time MoeGo may still hold at ``now``."""
    return now - RETENTION


def watermark(intervals: Iterable[Interval], window_start: datetime) -> datetime:
    """The end of the coverage running without a gap from ``window_start``; ``window_start`` when it is not covered."""
    for interval in merge(intervals):
        if interval.start <= window_start < interval.end:
            return interval.end
    return window_start


def gaps(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The parts of ``[start, end)`` that ``intervals`` do not cover, oldest first."""
    out: list[Interval] = []
    cursor = start
    for interval in clip(intervals, start, end):
        if interval.start > cursor:
            out.append(Interval(cursor, interval.start))
        cursor = max(cursor, interval.end)
    if cursor < end:
        out.append(Interval(cursor, end))
    return out


def at_risk(intervals: Iterable[Interval], now: datetime, *, horizon: timedelta = AT_RISK_HORIZON) -> list[Interval]:
    """The uncovered parts of the retention window that MoeGo deletes within ``horizon`` of ``now``."""
    window_start = retention_start(now)
    return gaps(intervals, window_start, min(now, window_start + horizon))


# -- storage (inside the caller's transaction) ------------------------------------------------------


def load_intervals(conn: sqlite3.Connection, webhook_id: str) -> list[Interval]:
    """The recorded coverage of one webhook, merged, oldest first."""
    rows = conn.execute("SELECT start, end FROM coverage WHERE webhook_id = ? ORDER BY start", (webhook_id,))
    return merge(Interval(parse_timestamp(s, name="coverage.start"), parse_timestamp(e, name="coverage.end")) for s, e in rows)


def record_interval(conn: sqlite3.Connection, webhook_id: str, new: Interval) -> list[Interval]:
    """Add ``new`` to a webhook's coverage, merging it with adjacent rows; returns the coverage after.

    Call inside :func:`collectors.archive.transaction`, in the same transaction as the pages it
    vouches for. Only the rows it touches are rewritten.
    """
    if not conn.in_transaction:
        raise RuntimeError("record_interval must run inside archive.transaction()")
    if new.empty:
        return load_intervals(conn, webhook_id)
    start, end = format_timestamp(new.start), format_timestamp(new.end)
    touching = conn.execute(
        "SELECT start, end FROM coverage WHERE webhook_id = ? AND start <= ? AND end >= ?",
        (webhook_id, end, start),
    ).fetchall()
    merged_start = min([start, *(row[0] for row in touching)])
    merged_end = max([end, *(row[1] for row in touching)])
    conn.execute(
        "DELETE FROM coverage WHERE webhook_id = ? AND start <= ? AND end >= ?", (webhook_id, end, start)
    )
    conn.execute(
        "INSERT INTO coverage (webhook_id, start, end) VALUES (?, ?, ?)", (webhook_id, merged_start, merged_end)
    )
    return load_intervals(conn, webhook_id)
