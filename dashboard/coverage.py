"""The archive's coverage read model (:mod:`collectors.archive.status`) as DataFrames for the pages.

The gaps and the at-risk estimate come from the same functions the ``status`` command uses, so the
Archive health page and ``moego-monitor status`` name every span alike; this module only shapes them
into tables and charts' inputs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

import pandas as pd

from collectors.archive import status
from collectors.archive.coverage import AT_RISK_HORIZON

__all__ = ["coverage_gaps", "AtRisk", "at_risk"]

_GAP_COLUMNS = ["webhook_id", "start", "end", "hours", "expires_at", "expired", "kind"]
_RISK_COLUMNS = ["webhook_id", "start", "end", "hours", "expires_at", "rate_per_hour", "estimated_entries"]


def coverage_gaps(conn: sqlite3.Connection, since: datetime, until: datetime, *, now: datetime,
                  webhook_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`collectors.archive.status.coverage_gaps` as a table, oldest first.

    Columns: ``webhook_id``, ``start``, ``end`` (aware UTC), ``hours``, ``expires_at``, ``expired`` and
    ``kind`` (``expired``, ``pending`` or ``open``).
    """
    records = [
        {"webhook_id": g.webhook_id, "start": g.gap.start, "end": g.gap.end, "hours": g.gap.hours,
         "expires_at": g.gap.expires_at, "expired": g.gap.kind == "expired", "kind": g.gap.kind}
        for g in status.coverage_gaps(conn, since, until, now=now, webhook_ids=webhook_ids)
    ]
    return pd.DataFrame.from_records(records, columns=_GAP_COLUMNS)


@dataclass(frozen=True)
class AtRisk:
    """Entries MoeGo deletes within the horizon that the archive may not hold.

    ``gaps`` columns: ``webhook_id``, ``start``, ``end``, ``hours``, ``expires_at``,
    ``rate_per_hour``, ``estimated_entries``.
    """

    estimated_entries: int
    gap_hours: float
    gaps: pd.DataFrame


def at_risk(conn: sqlite3.Connection, now: datetime, *, horizon: timedelta = AT_RISK_HORIZON,
            webhook_ids: Sequence[str] | None = None) -> AtRisk:
    """:func:`collectors.archive.status.at_risk_gaps` with its totals."""
    risky = status.at_risk_gaps(conn, now, horizon=horizon, webhook_ids=webhook_ids)
    frame = pd.DataFrame.from_records(
        [{"webhook_id": g.webhook_id, "start": g.start, "end": g.end, "hours": g.hours, "expires_at": g.expires_at,
          "rate_per_hour": g.rate_per_hour, "estimated_entries": g.estimated_entries} for g in risky],
        columns=_RISK_COLUMNS,
    )
    return AtRisk(
        estimated_entries=int(frame["estimated_entries"].sum()) if not frame.empty else 0,
        gap_hours=float(frame["hours"].sum()) if not frame.empty else 0.0,
        gaps=frame,
    )
