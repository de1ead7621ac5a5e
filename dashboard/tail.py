"""Live tail: the entries of the view that the collector archived since the user turned the tail on.

:func:`new_entries` is a pure query over a read connection: the view's filters (webhooks, event
types, outcome, status, search; not its time range), entries *delivered* from :data:`LOOKBACK` before
the tail started and *archived* (``first_seen_at``) after it, newest first. The delivered-at bound keeps
it on the time index: at MoeGo's ceiling an hour is a few thousand rows.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import pandas as pd

from collectors.archive.filters import Filters
from collectors.archive.where import deliveries_where
from collectors.models import format_timestamp

__all__ = ["LOOKBACK", "TAIL_COLUMNS", "new_entries"]

#: Entries delivered this long before the tail started still count when archived after it (collector lag).
LOOKBACK = timedelta(hours=1)
TAIL_COLUMNS = ["first_seen_at", "delivered_at", "id", "webhook_id", "event_type", "success", "response_status",
                "error"]


def new_entries(conn: sqlite3.Connection, filters: Filters, started: datetime, now: datetime, *,
                limit: int = 100) -> pd.DataFrame:
    """The view's entries archived at or after ``started`` (delivered from ``started - LOOKBACK`` to ``now``).

    Columns :data:`TAIL_COLUMNS`, times as aware UTC timestamps, newest archived first, at most ``limit``.
    """
    where = deliveries_where(filters, format_timestamp(started - LOOKBACK), format_timestamp(now + timedelta(minutes=1)))
    rows = conn.execute(
        f"SELECT first_seen_at, delivered_at, id, webhook_id, event_type, success, response_status, "
        f"substr(error, 1, 300) FROM deliveries WHERE {where.sql} AND first_seen_at >= ? "
        "ORDER BY first_seen_at DESC, delivered_at DESC LIMIT ?",
        (*where.params, format_timestamp(started), limit),
    ).fetchall()
    frame = pd.DataFrame.from_records(rows, columns=TAIL_COLUMNS)
    for column in ("first_seen_at", "delivered_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["success"] = frame["success"].astype("bool")
    return frame
