"""How a search reads the archive, so that its cost follows the page asked for, not the window.

A search matches words through the contentless FTS5 index ``deliveries_fts`` (rowids only). Two plans
(:data:`collectors.archive.where.SearchPlan`):

- *candidates*: read the word's matching rowids inside the window's rowid ranges (``delivery_spans``),
  look the rows up, check the window and filters, and sort what is left. Cost: the matches in range.
- *membership*: walk the time index in order and test each row against FTS5 (one doclist seek per
  row), stopping after a page. Cost: the rows walked, about the page divided by the share of rows
  that match.

:func:`choose_plan` probes how many matches the ranges hold, up to a limit that grows with them
(the square root of 200 times their rows: about where both plans cost the same), and takes
*candidates* below it, *membership* above: a rare word costs its few matches, a word most rows hold
costs a page's worth of rows. Counts stop at :data:`COUNT_CAP` matches (shown as "10,000+"):
:func:`count` reads matches from FTS5 and stops there; :func:`scope` finds, for a search with more
matches than that, a later part of the window (the last 1, 2, 4, ... whole hours) that holds more
than :data:`COUNT_CAP` of them, so aggregates over a search read about that many rows.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import timedelta

from ..models import format_timestamp, parse_timestamp
from .filters import Filters
from .rollups import rowid_ranges_sql
from .where import SearchPlan, deliveries_where, fts_candidates

__all__ = ["COUNT_CAP", "choose_plan", "count", "SearchScope", "scope"]

#: Counts of a search stop here and show as "10,000+".
COUNT_CAP = 10_000
_PROBE_MIN, _PROBE_MAX = 2_000, 200_000


def _probe_limit(conn: sqlite3.Connection, filters: Filters, since: str, until: str) -> int:
    rows = conn.execute(f"SELECT SUM(hi - lo + 1) FROM ({rowid_ranges_sql(filters.webhooks)})",
                        (since, until, *filters.webhooks)).fetchone()[0]
    return max(_PROBE_MIN, min(_PROBE_MAX, int(math.sqrt(200 * (rows or 0)))))


def choose_plan(conn: sqlite3.Connection, filters: Filters, since: str, until: str) -> SearchPlan:
    """*membership* when the search's words match many rows of the window's rowid ranges, else *candidates*."""
    if not filters.search:
        return "candidates"
    limit = _probe_limit(conn, filters, since, until)
    candidates = fts_candidates(filters.search, since, until, filters.webhooks)
    found = conn.execute(f"SELECT COUNT(*) FROM ({candidates.sql} LIMIT ?)", (*candidates.params, limit + 1)).fetchone()[0]
    return "membership" if found > limit else "candidates"


def count(conn: sqlite3.Connection, filters: Filters, since: str, until: str, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows of ``[since, until)`` the search view holds, stopping after ``cap``: ``(n, exact)``.

    FTS5 drives: at most ``cap + 1`` matching rows of the view are read (plus the matches in range that
    the window or the filters leave out), and the exact delivery id / event id seeks. Without a search (a
    view the rollup cannot count, such as exact statuses) the window's index range is read, ``cap + 1`` rows
    at the most.
    """
    text = filters.search
    if not text:
        where = deliveries_where(filters, since, until)
        n = conn.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE {where.sql} LIMIT ?)",
                         (*where.params, cap + 1)).fetchone()[0]
        return min(n, cap), n <= cap
    rest = deliveries_where(filters.with_changes(search=""), since, until, alias="d")
    candidates = fts_candidates(text, since, until, filters.webhooks)
    # DISTINCT: ranges of two webhooks may overlap; rows the exact id / event id part matches are counted apart.
    # A correlated lookup per match, so the matches stream and LIMIT stops them (a join would let SQLite
    # build a Bloom filter over the whole window first).
    matched = conn.execute(
        f"SELECT COUNT(*) FROM (SELECT DISTINCT m.rowid FROM ({candidates.sql}) AS m WHERE EXISTS (SELECT 1 FROM "
        f"deliveries AS d WHERE d.rowid = m.rowid AND ({rest.sql}) AND d.id <> ? AND d.event_id <> ?) LIMIT ?)",
        (*candidates.params, *rest.params, text, text, cap + 1),
    ).fetchone()[0]
    plain = deliveries_where(filters.with_changes(search=""), since, until)
    matched += conn.execute(f"SELECT COUNT(*) FROM deliveries WHERE (id = ? OR event_id = ?) AND ({plain.sql})",
                            (text, text, *plain.params)).fetchone()[0]
    return min(matched, cap), matched <= cap


@dataclass(frozen=True)
class SearchScope:
    """Where a search's aggregates should look: ``since`` (archive text) up to the window's end.

    ``capped`` is False when the whole window holds at most the cap of matches (``since`` is then the
    window's own start); True when it holds more, and ``since`` is then the start of the shortest run of
    whole hours before the window's end (1, 2, 4, ... hours) that holds more than the cap, or the
    window's start when none shorter does.
    """

    since: str
    capped: bool


def scope(conn: sqlite3.Connection, filters: Filters, since: str, until: str, *, cap: int = COUNT_CAP) -> SearchScope:
    """The part of ``[since, until)`` a search's aggregates read (see :class:`SearchScope`).

    Each step is a :func:`count` (at most ``cap + 1`` matches read), and the hours double, so the work
    is about twice the cap times the number of steps (at most 14 for a year).
    """
    if count(conn, filters, since, until, cap=cap)[1]:
        return SearchScope(since, False)
    end = parse_timestamp(until).replace(minute=0, second=0, microsecond=0)
    hours = 1
    while True:
        start = format_timestamp(end - timedelta(hours=hours))
        if start <= since:
            return SearchScope(since, True)
        if not count(conn, filters, start, until, cap=cap)[1]:
            return SearchScope(start, True)
        hours *= 2
