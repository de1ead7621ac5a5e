"""How a search reads the archive, so that its cost follows the page asked for, not the window.

A search matches words through the contentless FTS5 index ``deliveries_fts`` (rowids only). Two plans
(:data:`collectors.archive.where.SearchPlan`):

- *candidates*: read the word's matching rowids inside the window's rowid range (``delivery_spans``),
  look the rows up, check the window and filters, and sort what is left. Cost: the matches in range.
- *membership*: walk the time index in order and test each row against FTS5 (one doclist seek per
  row), stopping after a page. Cost: the rows walked, about the page divided by the share of rows
  that match.

:func:`choose_plan` probes how many matches the range holds, up to a limit that grows with the range
(the square root of 500 times its rows, where both plans cost about the same), and takes
*candidates* below it, *membership* above: a rare word costs its few matches, a word most rows hold
costs a page's worth of rows. Counts stop at :data:`COUNT_CAP` matches (shown as "10,000+"):
:func:`count` reads matches from FTS5 and stops there; :func:`scope` finds, for a search with more
matches than that, the later part of the window that holds the latest :data:`COUNT_CAP` of them, so
aggregates over a search read at most about that many rows.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

from .filters import Filters
from .rollups import rowid_bounds_sql
from .where import Clause, SearchPlan, deliveries_where, fts_query, fts_rowid_range

__all__ = ["COUNT_CAP", "choose_plan", "count", "SearchScope", "scope"]

#: Counts of a search stop here and show as "10,000+".
COUNT_CAP = 10_000
_PROBE_MIN, _PROBE_MAX = 2_000, 200_000


def _probe_limit(conn: sqlite3.Connection, filters: Filters, since: str, until: str) -> int:
    lo, hi = rowid_bounds_sql(filters.webhooks)
    params = (since, until, *filters.webhooks)
    lo_hi = conn.execute(f"SELECT {lo}, {hi}", params + params).fetchone()
    if lo_hi[0] is None:
        return _PROBE_MIN
    rows = max(1, lo_hi[1] - lo_hi[0] + 1)
    return max(_PROBE_MIN, min(_PROBE_MAX, int(math.sqrt(500 * rows))))


def choose_plan(conn: sqlite3.Connection, filters: Filters, since: str, until: str) -> SearchPlan:
    """*membership* when the search's words match many rows of the window's rowid range, else *candidates*."""
    if not filters.search:
        return "candidates"
    limit = _probe_limit(conn, filters, since, until)
    bounds = fts_rowid_range(since, until, filters.webhooks)
    found = conn.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM deliveries_fts WHERE deliveries_fts MATCH ? AND {bounds.sql} LIMIT ?)",
        (fts_query(filters.search), *bounds.params, limit + 1),
    ).fetchone()[0]
    return "membership" if found > limit else "candidates"


def _fts_driven(filters: Filters, since: str, until: str, select: str, tail: str = "") -> tuple[str, tuple]:
    """Rows of the view that FTS5 matches, read in FTS5's rowid order (the FTS table drives the join),
    leaving out rows the exact id / event id part matches (counted apart)."""
    rest = deliveries_where(filters.with_changes(search=""), since, until, alias="d")
    bounds = fts_rowid_range(since, until, filters.webhooks, column="deliveries_fts.rowid")
    text = filters.search
    sql = (f"SELECT {select} FROM deliveries_fts CROSS JOIN deliveries AS d ON d.rowid = deliveries_fts.rowid "
           f"WHERE deliveries_fts MATCH ? AND {bounds.sql} "
           f"AND ({rest.sql}) AND d.id <> ? AND d.event_id <> ? {tail}")
    return sql, (fts_query(text), *bounds.params, *rest.params, text, text)


def _exact(conn: sqlite3.Connection, filters: Filters, since: str, until: str) -> int:
    """Rows of the view whose delivery id or event id is the search text (index seeks)."""
    rest = deliveries_where(filters.with_changes(search=""), since, until)
    return conn.execute(f"SELECT COUNT(*) FROM deliveries WHERE (id = ? OR event_id = ?) AND ({rest.sql})",
                        (filters.search, filters.search, *rest.params)).fetchone()[0]


def count(conn: sqlite3.Connection, filters: Filters, since: str, until: str, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows of ``[since, until)`` the search view holds, stopping after ``cap``: ``(n, exact)``.

    Reads at most ``cap + 1`` matches from FTS5 (plus the exact id / event id seeks), whatever the window holds.
    """
    sql, params = _fts_driven(filters, since, until, "1", "LIMIT ?")
    n = conn.execute(f"SELECT COUNT(*) FROM ({sql})", (*params, cap + 1)).fetchone()[0]
    n += _exact(conn, filters, since, until)
    return min(n, cap), n <= cap


@dataclass(frozen=True)
class SearchScope:
    """Where a search's aggregates should look: ``since`` (archive text) up to the window's end.

    ``capped`` is False when the whole window holds at most :data:`COUNT_CAP` matches (``since`` is then
    the window's own start); True when it holds more, and ``since`` is the delivery time of the earliest
    of the latest :data:`COUNT_CAP` matches read (the part of the window from then on holds at least that many).
    """

    since: str
    capped: bool


def scope(conn: sqlite3.Connection, filters: Filters, since: str, until: str, *, cap: int = COUNT_CAP) -> SearchScope:
    """The part of ``[since, until)`` a search's aggregates read (see :class:`SearchScope`): at most ``cap + 1``
    FTS5 matches are read, newest rowids first (rows are archived about in time order)."""
    sql, params = _fts_driven(filters, since, until, "d.delivered_at", "ORDER BY deliveries_fts.rowid DESC LIMIT ?")
    times = [r[0] for r in conn.execute(sql, (*params, cap + 1))]
    if len(times) <= cap:
        return SearchScope(since, False)
    return SearchScope(min(times[:cap]), True)
