"""SQL ``WHERE`` clauses for :class:`~collectors.archive.filters.Filters`, against ``deliveries`` or its rollup.

Every clause on ``deliveries`` starts with the time range (``delivered_key``), so SQLite reads an index range
and never the whole table. Only parameters carry user input; column names come from fixed lists.

The search box matches, in one clause: a delivery id exactly, an event id exactly, or words in the
request body (payloads MoeGo sent as base64 included, decoded), response body or error through the
``deliveries_fts`` FTS5 index (:mod:`collectors.archive.search_index`), read only over the
rowid range of the window's hours (``delivery_spans``, see :func:`_search`), so a search costs what
the window holds, or, for a page of a common word, only what the page needs. Words are
quoted as FTS5 phrases, so whatever a user types is searched for, never parsed as FTS5 syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .filters import Filters
from .rollups import rowid_ranges_sql
from .when import key_of

__all__ = ["Clause", "SearchPlan", "fts_query", "fts_candidates", "deliveries_where", "hourly_where",
           "daily_where", "rollup_can_answer"]

#: How a search reads FTS5: the window's matches first, or a test of each row a scan reaches.
SearchPlan = Literal["candidates", "membership"]


@dataclass(frozen=True)
class Clause:
    """A SQL boolean expression and its positional parameters."""

    sql: str
    params: tuple[object, ...]

    def and_(self, other: "Clause") -> "Clause":
        """Both clauses."""
        return Clause(f"({self.sql}) AND ({other.sql})", self.params + other.params)


def fts_query(text: str) -> str:
    """An FTS5 query matching rows that contain every whitespace-separated term of ``text`` as a phrase.

    Each term is wrapped in double quotes (inner quotes doubled), so operators and punctuation a
    user types are searched for literally: ``cust_42 OR`` becomes ``"cust_42" "OR"``. Empty for
    blank text.
    """
    return " ".join('"' + term.replace('"', '""') + '"' for term in text.split())


def _in(column: str, values: tuple[str, ...]) -> Clause:
    return Clause(f"{column} IN ({', '.join('?' for _ in values)})", tuple(values))


def _common(filters: Filters, prefix: str, *, webhook_index: bool = True) -> list[Clause]:
    parts: list[Clause] = []
    if filters.webhooks:
        # A unary + keeps SQLite off the (webhook_id, delivered_key) index, for time-ordered scans.
        plus = "" if webhook_index or len(filters.webhooks) == 1 else "+"
        parts.append(_in(f"{plus}{prefix}webhook_id", filters.webhooks))
    if filters.event_types:
        parts.append(_in(f"{prefix}event_type", filters.event_types))
    if filters.outcome == "success":
        parts.append(Clause(f"{prefix}success = 1", ()))
    elif filters.outcome == "failed":
        parts.append(Clause(f"{prefix}success = 0", ()))
    if filters.status_classes:
        parts.append(_in(f"{prefix}status_class", filters.status_classes))
    return parts


def _join(parts: list[Clause]) -> Clause:
    if not parts:
        return Clause("1", ())
    sql = " AND ".join(f"({p.sql})" for p in parts)
    params: tuple[object, ...] = ()
    for p in parts:
        params += p.params
    return Clause(sql, params)


def deliveries_where(filters: Filters, since: str, until: str, *, alias: str = "", time_ordered: bool = False,
                     search: SearchPlan = "candidates") -> Clause:
    """The rows of ``deliveries`` (optionally aliased) in ``[since, until)`` that ``filters`` select.

    ``since`` and ``until`` are archive timestamps (fixed-width RFC 3339 UTC, or a prefix of one
    such as an hour ``2026-11-01T13``), compared as ``delivered_key`` integers (:func:`~collectors.archive.when.key_of`). ``time_ordered=True`` is for a
    scan in ``delivered_at`` order: with several webhooks selected it keeps SQLite on the time
    index (streaming in order) instead of collecting each webhook's rows and sorting them all.
    ``search`` chooses how the search box's words are matched (see :func:`_search`).
    """
    prefix = f"{alias}." if alias else ""
    parts = [Clause(f"{prefix}delivered_key >= ? AND {prefix}delivered_key < ?", (key_of(since), key_of(until)))]
    parts.extend(_common(filters, prefix, webhook_index=not time_ordered))
    if filters.status_codes:
        parts.append(Clause(f"{prefix}response_status IN ({', '.join('?' for _ in filters.status_codes)})",
                            filters.status_codes))
    if filters.search:
        parts.append(_search(filters.search, alias or "deliveries", since, until, filters.webhooks, search))
    return _join(parts)


def fts_candidates(text: str, since: str, until: str, webhooks: tuple[str, ...] = ()) -> Clause:
    """A SELECT of ``f.rowid``: the rowids FTS5 matches for ``text`` inside the rowid ranges of the rows
    delivered in ``[since, until)`` (by ``webhooks``), read from ``delivery_spans`` (never a scan of the
    window); FTS5 seeks inside its doclists to each range. May hold rows outside the window (and a rowid
    twice): callers check the rows themselves."""
    return Clause(
        f"SELECT f.rowid FROM ({rowid_ranges_sql(webhooks)}) AS s CROSS JOIN deliveries_fts AS f "
        "WHERE f.deliveries_fts MATCH ? AND f.rowid >= s.lo AND f.rowid <= s.hi",
        (since, until, *webhooks, fts_query(text)),
    )


def _search(text: str, table: str, since: str, until: str, webhooks: tuple[str, ...], plan: SearchPlan) -> Clause:
    """The search box's clause: an exact delivery id or event id (index seeks), or words through FTS5.

    ``candidates``: the matching rowids are read from FTS5 inside the window's rowid ranges
    (:func:`fts_candidates`), then the rows looked up: the
    cost follows the matches in that range, so this is the plan for few matches, aggregates and exports.
    ``membership``: each row the outer scan reaches is tested against FTS5 (one doclist seek per row),
    so a time-ordered walk with a ``LIMIT`` stops after a page: the plan for a word most rows hold
    (:mod:`collectors.archive.search_plan` chooses). Either way the row's own ``delivered_at`` and
    filters are checked too, so a wider rowid range never changes a result.
    """
    if plan == "membership":
        fts = Clause(f"EXISTS (SELECT 1 FROM deliveries_fts WHERE deliveries_fts MATCH ? "
                     f"AND deliveries_fts.rowid = {table}.rowid)", (fts_query(text),))
    else:
        candidates = fts_candidates(text, since, until, webhooks)
        fts = Clause(f"{table}.rowid IN ({candidates.sql})", candidates.params)
    return Clause(f"{table}.id = ? OR {table}.event_id = ? OR {fts.sql}", (text, text, *fts.params))


def rollup_can_answer(filters: Filters) -> bool:
    """True when ``delivery_hourly`` holds every dimension ``filters`` use (all but the search box and exact
    statuses: the rollup keeps status classes, not codes)."""
    return not filters.search and not filters.status_codes


def hourly_where(filters: Filters, hour_from: str, hour_to: str) -> Clause:
    """The rows of ``delivery_hourly`` with ``hour_from <= hour < hour_to`` (``YYYY-MM-DDTHH``) that ``filters`` select.

    Raises ``ValueError`` for filters the rollup cannot answer (see :func:`rollup_can_answer`).
    """
    if not rollup_can_answer(filters):
        raise ValueError("the rollup cannot answer a text search or an exact status")
    parts = [Clause("hour >= ? AND hour < ?", (hour_from, hour_to))]
    parts.extend(_common(filters, ""))
    return _join(parts)


def daily_where(filters: Filters, day_from: str, day_to: str) -> Clause:
    """:func:`hourly_where` for a daily rollup (``delivery_daily``, ``delivery_daily_status``): ``day_from <= day < day_to``
    (``YYYY-MM-DD``)."""
    if not rollup_can_answer(filters):
        raise ValueError("the rollup cannot answer a text search or an exact status")
    return _join([Clause("day >= ? AND day < ?", (day_from, day_to)), *_common(filters, "")])
