"""What the archive covers, what it misses, and what MoeGo is about to delete from what it misses.

The interval arithmetic and the terms (retention window, gap, at risk) are
:mod:`collectors.coverage`'s; this module reads the ``coverage`` table for the dashboard and puts
numbers on it. MoeGo keeps a delivery log entry for 15 days; an entry delivered in a part of that
window no coverage interval holds is lost unless collected before then. "At risk" means: in such
a gap and expiring within 48 h, i.e. delivered in ``[now - 15 d, now - 13 d)``.

How many entries lie in a gap cannot be read from the archive (they were never collected), so the
count is an estimate: the gap's length times the webhook's usual rate, measured over the covered
part of the last 15 days from the ``delivery_hourly`` rollup.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import pandas as pd

from collectors.coverage import AT_RISK_HORIZON, RETENTION, Interval, at_risk as risky_gaps, clip, gaps, merge
from collectors.models import MalformedMessage, format_timestamp, parse_timestamp

__all__ = [
    "tracked_webhooks",
    "coverage_intervals",
    "coverage_gaps",
    "AtRisk",
    "at_risk",
]


def _time(text: str) -> datetime | None:
    try:
        return parse_timestamp(text)
    except MalformedMessage:
        return None


def tracked_webhooks(conn: sqlite3.Connection, since: datetime) -> list[str]:
    """Webhooks whose coverage matters: archived and not deleted, or with coverage or rollup rows since ``since``."""
    ids = {row[0] for row in conn.execute("SELECT id FROM webhooks WHERE deleted_at IS NULL")}
    deleted = {row[0] for row in conn.execute("SELECT id FROM webhooks WHERE deleted_at IS NOT NULL")}
    stamp = format_timestamp(since)
    ids.update(row[0] for row in conn.execute("SELECT DISTINCT webhook_id FROM coverage WHERE end > ?", (stamp,)))
    ids.update(
        row[0] for row in conn.execute("SELECT DISTINCT webhook_id FROM delivery_hourly WHERE hour >= ?", (stamp[:13],))
    )
    return sorted(ids - deleted)


def coverage_intervals(conn: sqlite3.Connection, since: datetime, until: datetime,
                       webhook_ids: Sequence[str] | None = None) -> dict[str, list[Interval]]:
    """Per webhook (every one of ``webhook_ids``, else those with coverage), its coverage clipped to ``[since, until)``."""
    rows = conn.execute(
        "SELECT webhook_id, start, end FROM coverage WHERE end > ? AND start < ? ORDER BY webhook_id, start",
        (format_timestamp(since), format_timestamp(until)),
    ).fetchall()
    found: dict[str, list[Interval]] = {w: [] for w in (webhook_ids or [])}
    for webhook_id, start_text, end_text in rows:
        if webhook_ids is not None and webhook_id not in found:
            continue
        start, end = _time(start_text), _time(end_text)
        if start is not None and end is not None:
            found.setdefault(webhook_id, []).append(Interval(start, end))
    return {w: clip(intervals, since, until) for w, intervals in found.items()}


_GAP_COLUMNS = ["webhook_id", "start", "end", "hours", "expires_at", "expired", "kind"]


def coverage_gaps(conn: sqlite3.Connection, since: datetime, until: datetime, *, now: datetime,
                  webhook_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The uncovered parts of ``[since, until)`` per webhook, oldest first.

    Columns: ``webhook_id``, ``start``, ``end`` (aware UTC), ``hours``, ``expires_at`` (when MoeGo
    deletes the gap's oldest entries, ``start + 15 d``), ``expired`` and ``kind``: ``expired``
    (already deleted upstream: lost for good), ``pending`` (the time since the webhook's last
    covered interval, up to ``until``: what the next collection reads) or ``open`` (a hole
    still collectable). A gap straddling the retention start is split there, so each row is wholly
    one kind. ``webhook_ids`` defaults to :func:`tracked_webhooks`.
    """
    ids = list(webhook_ids) if webhook_ids is not None else tracked_webhooks(conn, since)
    covered = coverage_intervals(conn, since, until, ids)
    retention_start = now - RETENTION
    last_end = {w: spans[-1].end for w, spans in covered.items() if spans}
    records = []
    for webhook_id in ids:
        for gap in gaps(covered.get(webhook_id, []), since, until):
            # A gap straddling the retention start is two: the part MoeGo already deleted, and the rest.
            parts = [gap]
            if gap.start < retention_start < gap.end:
                parts = [Interval(gap.start, retention_start), Interval(retention_start, gap.end)]
            for part in parts:
                if part.end <= retention_start:
                    kind = "expired"
                elif part.end >= until and webhook_id in last_end and part.start >= last_end[webhook_id]:
                    kind = "pending"
                else:
                    kind = "open"
                records.append(
                    {
                        "webhook_id": webhook_id,
                        "start": part.start,
                        "end": part.end,
                        "hours": (part.end - part.start).total_seconds() / 3600,
                        "expires_at": part.start + RETENTION,
                        "expired": kind == "expired",
                        "kind": kind,
                    }
                )
    frame = pd.DataFrame.from_records(records, columns=_GAP_COLUMNS)
    return frame.sort_values(["start", "webhook_id"], ignore_index=True) if not frame.empty else frame


@dataclass(frozen=True)
class AtRisk:
    """Entries MoeGo deletes within the horizon that the archive may not hold.

    ``gaps`` columns: ``webhook_id``, ``start``, ``end``, ``hours``, ``expires_at``,
    ``rate_per_hour``, ``estimated_entries``.
    """

    estimated_entries: int
    gap_hours: float
    gaps: pd.DataFrame


def _covered_seconds(intervals: Sequence[Interval]) -> float:
    return sum((i.end - i.start).total_seconds() for i in merge(intervals))


def _hourly_rate(conn: sqlite3.Connection, webhook_id: str, since: datetime, until: datetime,
                 covered: Sequence[Interval]) -> float:
    """Deliveries an hour archived for ``webhook_id`` in ``[since, until)``, over the covered time (0 under an hour)."""
    seconds = _covered_seconds(covered)
    if seconds < 3600:
        return 0.0
    count = conn.execute(
        "SELECT COALESCE(SUM(deliveries), 0) FROM delivery_hourly WHERE webhook_id = ? AND hour >= ? AND hour < ?",
        (webhook_id, since.strftime("%Y-%m-%dT%H"), until.strftime("%Y-%m-%dT%H")),
    ).fetchone()[0]
    return count / (seconds / 3600)


def at_risk(conn: sqlite3.Connection, now: datetime, *, horizon: timedelta = AT_RISK_HORIZON,
            webhook_ids: Sequence[str] | None = None) -> AtRisk:
    """The gaps MoeGo deletes within ``horizon`` of ``now`` per webhook, with an estimate of their entries.

    A webhook's estimate is ``gap hours x its rate``, the rate measured over the covered part of
    the last 15 days; a webhook never covered there has no measurable rate and estimates 0 entries
    while its gap hours still count. ``webhook_ids`` defaults to :func:`tracked_webhooks`.
    """
    now = now.astimezone(timezone.utc)
    window_start = now - RETENTION
    ids = list(webhook_ids) if webhook_ids is not None else tracked_webhooks(conn, window_start)
    covered = coverage_intervals(conn, window_start, now, ids)
    records = []
    for webhook_id in ids:
        risky = risky_gaps(covered.get(webhook_id, []), now, horizon=horizon)
        if not risky:
            continue
        rate = _hourly_rate(conn, webhook_id, window_start, now, covered.get(webhook_id, []))
        for gap in risky:
            hours = (gap.end - gap.start).total_seconds() / 3600
            records.append(
                {
                    "webhook_id": webhook_id,
                    "start": gap.start,
                    "end": gap.end,
                    "hours": hours,
                    "expires_at": gap.start + RETENTION,
                    "rate_per_hour": rate,
                    "estimated_entries": int(math.ceil(hours * rate - 1e-9)),
                }
            )
    columns = ["webhook_id", "start", "end", "hours", "expires_at", "rate_per_hour", "estimated_entries"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    return AtRisk(
        estimated_entries=int(frame["estimated_entries"].sum()) if not frame.empty else 0,
        gap_hours=float(frame["hours"].sum()) if not frame.empty else 0.0,
        gaps=frame,
    )
