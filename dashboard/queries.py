"""Archive -> DataFrame: every question the dashboard asks, as a pure function of a read connection.

Each function takes a ``sqlite3.Connection`` (read-only is enough), the :class:`~collectors.archive.filters.Filters`
and a :class:`~collectors.archive.filters.Window` where relevant, and returns plain data; none touches
Streamlit, none reads the environment. Every query of ``deliveries`` is bounded by the window's
``delivered_at`` range (an index range), or looks rows up by an indexed key (``id``, ``event_id``).
Lists are read a page at a time with a keyset (``delivered_at``, ``id``) and ``LIMIT``, never whole.
Times come back as aware UTC pandas timestamps; the UI converts them to the user's zone.

Aggregates live in :mod:`dashboard.stats` (rollup + edge rows, histogram percentiles) and coverage in
:mod:`dashboard.coverage`; :mod:`dashboard.reads` is the cached layer the pages call.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pandas as pd

from collectors.archive import codec, search_plan
from collectors.archive.filters import Filters, Window
from collectors.archive.names import webhook_labels
from collectors.archive.rollups import has_table
from collectors.archive.when import key_after, key_of
from collectors.archive.where import daily_where, deliveries_where, hourly_where, rollup_can_answer
from collectors.models import EVENT_TYPES, format_timestamp, parse_timestamp
from collectors.redelivery import Candidate

from .coverage import AtRisk, at_risk
from .stats import Summary, aggregate, hours_and_days, rollup_split, summarize, summary

__all__ = [
    "Tiles", "tiles", "archive_since", "redelivery_count", "SearchWindow", "search_window", "failures_by",
    "failures_by_status",
    "HEALTH_COLUMNS", "health_state", "webhook_health",
    "Count", "count_deliveries", "Cursor", "Page", "LIST_COLUMNS", "delivery_page",
    "delivery", "event_attempts", "redeliveries_of", "redelivered_attempts", "failed_candidates",
    "FilterOptions", "filter_options", "webhooks", "collector_runs", "sync_states",
]


def _utc(series: pd.Series) -> pd.Series:
    """Archive timestamps (text) as aware UTC pandas timestamps; missing stays NaT."""
    return pd.to_datetime(series, utc=True, format="ISO8601")


# -- overview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tiles:
    """The overview's headline numbers for a window and the window before it."""

    current: Summary
    previous: Summary
    redeliveries: int
    previous_redeliveries: int
    at_risk: AtRisk
    archive_since: datetime | None = None  # the earliest time the archive holds anything of the filtered webhooks


def archive_since(conn: sqlite3.Connection, webhook_ids: tuple[str, ...] = ()) -> datetime | None:
    """The earliest moment the archive covers or holds deliveries for (``webhook_ids``, else all); ``None`` if empty.

    Two index seeks: the coverage table's first start and the rollup's first hour.
    """
    hooks = f" WHERE webhook_id IN ({', '.join('?' for _ in webhook_ids)})" if webhook_ids else ""
    covered = conn.execute(f"SELECT MIN(start) FROM coverage{hooks}", webhook_ids).fetchone()[0]
    hour = conn.execute(f"SELECT MIN(hour) FROM delivery_hourly{hooks}", webhook_ids).fetchone()[0]
    found = [pd.Timestamp(covered).to_pydatetime()] if covered else []
    if hour:
        found.append(pd.Timestamp(hour + ":00:00Z").to_pydatetime())
    return min(found) if found else None


def redelivery_count(conn: sqlite3.Connection, filters: Filters, window: Window) -> int:
    """Redeliveries sent (audit rows with outcome ``sent``) requested in ``window`` for the filtered webhooks."""
    sql = "SELECT COUNT(*) FROM redeliveries WHERE requested_at >= ? AND requested_at < ? AND outcome = 'sent'"
    params: list[object] = [window.since_text, window.until_text]
    if filters.webhooks:
        sql += f" AND webhook_id IN ({', '.join('?' for _ in filters.webhooks)})"
        params.extend(filters.webhooks)
    return int(conn.execute(sql, params).fetchone()[0])


def tiles(conn: sqlite3.Connection, filters: Filters, window: Window, now: datetime) -> Tiles:
    """Summary of ``window`` and of the window before it, redeliveries of both, and what is at risk now.

    The at-risk estimate covers the filtered webhooks (all tracked ones without a webhook filter).
    """
    risk = at_risk(conn, now, webhook_ids=list(filters.webhooks) or None)
    return Tiles(
        current=summary(conn, filters, window),
        previous=summary(conn, filters, window.previous()),
        redeliveries=redelivery_count(conn, filters, window),
        previous_redeliveries=redelivery_count(conn, filters, window.previous()),
        at_risk=risk,
        archive_since=archive_since(conn, filters.webhooks),
    )


@dataclass(frozen=True)
class SearchWindow:
    """The part of a window a search's figures cover: the whole ``window`` unless ``capped``.

    ``capped``: the window holds more than :data:`~collectors.archive.search_plan.COUNT_CAP` matches,
    and ``window`` is its later part (the last whole hours) holding more than that many.
    """

    window: Window
    capped: bool


def search_window(conn: sqlite3.Connection, filters: Filters, window: Window, *,
                  cap: int = search_plan.COUNT_CAP) -> SearchWindow:
    """Where the Overview's figures look for a search view: all of ``window`` when it holds at most
    :data:`~collectors.archive.search_plan.COUNT_CAP` matches, else a later part holding more than that
    (:func:`collectors.archive.search_plan.scope`), so every figure reads about that many rows however
    common the word is."""
    if not filters.search:
        return SearchWindow(window, False)
    found = search_plan.scope(conn, filters, window.since_text, window.until_text, cap=cap)
    if not found.capped:
        return SearchWindow(window, False)
    return SearchWindow(Window(max(parse_timestamp(found.since), window.since), window.until), True)


def failures_by(conn: sqlite3.Connection, filters: Filters, window: Window, dim: str) -> pd.DataFrame:
    """Failed deliveries per value of ``dim`` (``error_class``, ``status_class``, ``event_type`` or ``webhook_id``).

    Columns ``[dim, "failures"]``, most failures first; values without failures are left out.
    """
    if dim not in ("error_class", "status_class", "event_type", "webhook_id"):
        raise ValueError(f"cannot break failures down by {dim!r}")
    frame = aggregate(conn, filters, window, dims=(dim, "success"))
    if frame.empty:
        return pd.DataFrame({dim: pd.Series(dtype="object"), "failures": pd.Series(dtype="int64")})
    frame = frame.assign(failures=frame["deliveries"] - frame["successes"])
    out = frame.groupby(dim, as_index=False)["failures"].sum()
    out = out[out["failures"] > 0]
    return out.sort_values(["failures", dim], ascending=[False, True], ignore_index=True)


def failures_by_status(conn: sqlite3.Connection, filters: Filters, window: Window) -> pd.DataFrame:
    """Failed deliveries per exact HTTP response status (0 = no response), most first.

    Columns ``response_status`` (int), ``status_class``, ``failures``. Whole UTC days come from the
    ``delivery_daily_status`` rollup, the whole hours around them from ``delivery_hourly_status``, the
    window's partial edge hours (and a search view) from the failed raw rows: the cost follows the window's
    days (and at most 46 hours around them), not how many rows or kinds of failure it holds.
    """
    counts: Counter[tuple[int, str]] = Counter()
    if filters.outcome != "success":
        status_filters = filters.with_changes(outcome="all")
        if rollup_can_answer(filters):
            split = rollup_split(window)
            raw_spans = list(split.edges)
            if has_table(conn, "delivery_daily_status"):
                hours, days = hours_and_days(split.hour_from, split.hour_to)
            else:  # an archive the collector has not brought to schema 10 yet: the same numbers from the hours
                hours, days = ([(split.hour_from, split.hour_to)] if split.hour_from else []), None
            for hour_from, hour_to in hours:
                where = hourly_where(status_filters, hour_from, hour_to)
                counts.update({(s, c): n for s, c, n in conn.execute(
                    f"SELECT response_status, status_class, SUM(failures) FROM delivery_hourly_status "
                    f"WHERE {where.sql} GROUP BY 1, 2", where.params)})
            if days:
                where = daily_where(status_filters, *days)
                counts.update({(s, c): n for s, c, n in conn.execute(
                    f"SELECT response_status, status_class, SUM(failures) FROM delivery_daily_status "
                    f"WHERE {where.sql} GROUP BY 1, 2", where.params)})
        else:
            raw_spans = [(window.since_text, window.until_text)]
        for since, until in raw_spans:
            where = deliveries_where(status_filters, since, until)
            counts.update({(s, c): n for s, c, n in conn.execute(
                f"SELECT response_status, status_class, COUNT(*) FROM deliveries WHERE {where.sql} AND success = 0 "
                "GROUP BY 1, 2", where.params)})
    rows = sorted(((s, c, n) for (s, c), n in counts.items() if n), key=lambda r: (-r[2], r[0], r[1]))
    return pd.DataFrame.from_records(rows, columns=["response_status", "status_class", "failures"]).astype(
        {"response_status": "int64", "failures": "int64"}
    )


#: Health thresholds: at least this many failures in a row, or a success rate below this, is failing.
FAILING_STREAK = 5
FAILING_RATE = 0.8
#: Below this success rate, or slower than this p95, or any failure in a row, is degraded.
DEGRADED_RATE = 0.99
DEGRADED_P95_MS = 10_000.0
_STREAK_CAP = 10_000

HEALTH_COLUMNS = [
    "webhook_id", "endpoint_url", "state", "deliveries", "success_rate", "p95_ms",
    "last_success", "last_failure", "consecutive_failures",
]


def health_state(*, active: bool, deliveries: int, success_rate: float | None, p95_ms: float | None,
                 consecutive_failures: int) -> str:
    """``inactive``, ``failing``, ``degraded`` or ``healthy`` (see the thresholds above).

    Inactive: disabled or deleted in MoeGo, or no delivery in the window. Failing: the last
    :data:`FAILING_STREAK` entries failed, or under :data:`FAILING_RATE` succeeded. Degraded: the
    latest entry failed, or under :data:`DEGRADED_RATE` succeeded, or p95 above :data:`DEGRADED_P95_MS`.
    """
    if not active or deliveries == 0:
        return "inactive"
    rate = success_rate if success_rate is not None else 0.0
    if consecutive_failures >= FAILING_STREAK or rate < FAILING_RATE:
        return "failing"
    if consecutive_failures > 0 or rate < DEGRADED_RATE or (p95_ms is not None and p95_ms > DEGRADED_P95_MS):
        return "degraded"
    return "healthy"


#: A webhook's latest entry with one outcome before a time: one seek on ``deliveries_by_webhook_outcome_time``.
_LATEST_SQL = (
    "SELECT delivered_at FROM deliveries WHERE webhook_id = ? AND success = ? AND delivered_key < ? "
    "ORDER BY delivered_key DESC LIMIT 1"
)
#: Failures after a moment (the last success), capped: a range of ``deliveries_by_webhook_outcome_time``.
_STREAK_SQL = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE webhook_id = ? AND success = 0 AND delivered_key > ? "
    "AND delivered_key < ? LIMIT ?)"
)


def _latest(conn: sqlite3.Connection, webhook_id: str, until: str, success: int) -> str | None:
    """When ``webhook_id``'s latest entry with this outcome before ``until`` was delivered; one index seek."""
    row = conn.execute(_LATEST_SQL, (webhook_id, success, key_of(until))).fetchone()
    return row[0] if row else None


def _streak(conn: sqlite3.Connection, webhook_id: str, after: str | None, until: str) -> int:
    """Entries after the last success (all failures, by definition), capped at :data:`_STREAK_CAP`.

    Reads only failures (``success = 0``), so the outcome index serves it: the cost is the streak, capped.
    """
    return int(conn.execute(_STREAK_SQL, (webhook_id, key_after(after), key_of(until), _STREAK_CAP)).fetchone()[0])


def webhook_health(conn: sqlite3.Connection, filters: Filters, window: Window) -> pd.DataFrame:
    """One row per webhook (archived, or seen in the window): :data:`HEALTH_COLUMNS`, failing first.

    Deliveries, success rate and p95 are over the window for the filtered webhooks and event types,
    but every outcome, status class and search: they describe the webhook's health, so a view of
    failures alone never reads as "failing 0%". Last success, last failure and consecutive failures
    are the webhook's latest entries up to the window's end, unfiltered (they describe the endpoint,
    not the view). Webhooks filtered out by a webhook filter are left out.
    """
    health_filters = filters.with_changes(outcome="all", status_classes=(), search="")
    per_hook = aggregate(conn, health_filters, window, dims=("webhook_id",))
    meta = {
        row[0]: (row[1], bool(row[2]) and row[3] is None)
        for row in conn.execute("SELECT id, endpoint_url, is_active, deleted_at FROM webhooks")
    }
    ids = set(meta)
    if not per_hook.empty:
        ids |= set(per_hook["webhook_id"])
    if filters.webhooks:
        ids &= set(filters.webhooks)
    records = []
    for webhook_id in sorted(ids):
        rows = per_hook[per_hook["webhook_id"] == webhook_id] if not per_hook.empty else per_hook
        numbers = summarize(rows)
        endpoint, active = meta.get(webhook_id, ("", True))
        last_success = _latest(conn, webhook_id, window.until_text, 1)
        last_failure = _latest(conn, webhook_id, window.until_text, 0)
        streak = _streak(conn, webhook_id, last_success, window.until_text) if last_failure else 0
        records.append(
            {
                "webhook_id": webhook_id,
                "endpoint_url": endpoint,
                "state": health_state(active=active, deliveries=numbers.deliveries, success_rate=numbers.success_rate,
                                      p95_ms=numbers.p95_ms, consecutive_failures=streak),
                "deliveries": numbers.deliveries,
                "success_rate": numbers.success_rate,
                "p95_ms": numbers.p95_ms,
                "last_success": last_success,
                "last_failure": last_failure,
                "consecutive_failures": streak,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=HEALTH_COLUMNS)
    frame["last_success"] = _utc(frame["last_success"])
    frame["last_failure"] = _utc(frame["last_failure"])
    frame["success_rate"] = frame["success_rate"].astype("float64")
    frame["p95_ms"] = frame["p95_ms"].astype("float64")
    order = {"failing": 0, "degraded": 1, "healthy": 2, "inactive": 3}
    frame["_order"] = frame["state"].map(order)
    return frame.sort_values(["_order", "webhook_id"], ignore_index=True).drop(columns="_order")


# -- deliveries list -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """How many rows a view holds: exact, or at least ``value`` when the count stopped at its cap."""

    value: int
    exact: bool

    def __str__(self) -> str:
        return f"{self.value:,}" if self.exact else f"{self.value:,}+"


def count_deliveries(conn: sqlite3.Connection, filters: Filters, window: Window, *,
                     cap: int = search_plan.COUNT_CAP) -> Count:
    """The number of deliveries the view holds: exact from the rollup, or, for a search, counted up to ``cap``
    (reading at most ``cap + 1`` matches, however many the window holds)."""
    if rollup_can_answer(filters):
        return Count(summary(conn, filters, window).deliveries, True)
    n, exact = search_plan.count(conn, filters, window.since_text, window.until_text, cap=cap)
    return Count(n, exact)


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: strictly after this (``delivered_at``, ``id``) in the page order."""

    delivered_at: str
    id: str


@dataclass(frozen=True)
class Page:
    """One page of the list; ``next`` is the cursor of the following page, ``None`` on the last one."""

    rows: pd.DataFrame
    next: Cursor | None = None
    columns: tuple[str, ...] = field(default=())


#: The list's columns (bodies and headers are left to the detail view).
LIST_COLUMNS: tuple[str, ...] = (
    "delivered_at", "id", "webhook_id", "event_type", "event_id", "success", "response_status",
    "error_class", "duration_ms", "retry_count", "error",
)


def delivery_page(conn: sqlite3.Connection, filters: Filters, window: Window, *, after: Cursor | None = None,
                  order: Literal["newest", "oldest"] = "newest", limit: int = 50) -> Page:
    """``limit`` deliveries of the view in time order, starting after ``after`` (keyset pagination).

    Columns: :data:`LIST_COLUMNS`, ``delivered_at`` as an aware UTC timestamp, ``success`` as bool,
    ``error`` cut to 300 characters. Reads at most ``limit + 1`` rows of an index range; with
    several webhooks selected, at most ``limit + 1`` per webhook (one index range each, merged). A search
    reads its few matches, or walks the time index testing each row until the page is full, whichever
    :func:`collectors.archive.search_plan.choose_plan` finds cheaper.
    """
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be 1..1000")
    direction, compare = ("DESC", "<") if order == "newest" else ("ASC", ">")
    columns = (
        "delivered_at, id, webhook_id, event_type, event_id, success, response_status, error_class, "
        "duration_ms, retry_count, substr(error, 1, 300) AS error"
    )
    # Each arm walks the time index; the merge of the arms' few rows sorts their text (the same order).
    ordering = f" ORDER BY delivered_key {direction}, id {direction} LIMIT ?"
    merged = f" ORDER BY delivered_at {direction}, id {direction} LIMIT ?"

    plan = search_plan.choose_plan(conn, filters, window.since_text, window.until_text)

    def arm(part: Filters) -> tuple[str, list[object]]:
        where = deliveries_where(part, window.since_text, window.until_text, search=plan)
        sql = f"SELECT {columns} FROM deliveries WHERE {where.sql}"
        params: list[object] = list(where.params)
        if after is not None:
            sql += f" AND (delivered_key, id) {compare} (?, ?)"
            params += [key_of(after.delivered_at), after.id]
        return sql + ordering, params + [limit + 1]

    if len(filters.webhooks) > 1:
        arms = [arm(filters.with_changes(webhooks=(hook,))) for hook in filters.webhooks]
        sql = " UNION ALL ".join(f"SELECT * FROM ({a[0]})" for a in arms) + merged
        params = [p for a in arms for p in a[1]] + [limit + 1]
    else:
        sql, params = arm(filters)
    rows = conn.execute(sql, params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    frame = pd.DataFrame.from_records(rows, columns=list(LIST_COLUMNS))
    next_cursor = Cursor(rows[-1][0], rows[-1][1]) if more and rows else None
    frame["delivered_at"] = _utc(frame["delivered_at"])
    frame["success"] = frame["success"].astype("bool")
    return Page(rows=frame, next=next_cursor, columns=LIST_COLUMNS)


def failed_candidates(conn: sqlite3.Connection, filters: Filters, window: Window, *, limit: int) -> list[Candidate]:
    """The failed deliveries of the view (at most ``limit``, oldest first), for a bulk redelivery."""
    where = deliveries_where(filters, window.since_text, window.until_text, time_ordered=True)
    rows = conn.execute(
        f"SELECT id, webhook_id, event_id, delivered_at FROM deliveries WHERE {where.sql} AND success = 0 "
        "ORDER BY delivered_key, id LIMIT ?",
        (*where.params, limit),
    ).fetchall()
    return [Candidate(delivery_id=r[0], webhook_id=r[1], event_id=r[2], delivered_at=r[3]) for r in rows]


# -- one delivery --------------------------------------------------------------------------------


def _headers(text: str) -> dict[str, list[str]]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in value.items()}


def delivery(conn: sqlite3.Connection, delivery_id: str) -> dict[str, Any] | None:
    """Every stored field of one delivery (headers parsed to ``{name: [values]}``), or ``None``."""
    cursor = conn.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    record = codec.readable(conn, dict(zip([d[0] for d in cursor.description], row)))
    record["request_headers"] = _headers(record["request_headers"])
    record["response_headers"] = _headers(record["response_headers"])
    record["success"] = bool(record["success"])
    return record


def event_attempts(conn: sqlite3.Connection, event_id: str, webhook_id: str | None = None, *,
                   limit: int = 200) -> pd.DataFrame:
    """Every archived attempt at delivering ``event_id`` (to ``webhook_id`` when given), oldest first.

    Columns: ``delivered_at`` (UTC), ``id``, ``webhook_id``, ``success``, ``response_status``,
    ``duration_ms``, ``retry_count``, ``error``. Looked up by the ``event_id`` index, at most ``limit``.
    """
    columns = ["delivered_at", "id", "webhook_id", "success", "response_status", "duration_ms", "retry_count", "error"]
    if not event_id:
        return pd.DataFrame(columns=columns)
    sql = f"SELECT {', '.join(columns)} FROM deliveries WHERE event_id = ?"
    params: list[object] = [event_id]
    if webhook_id:
        sql += " AND webhook_id = ?"
        params.append(webhook_id)
    sql += " ORDER BY delivered_at, id LIMIT ?"
    params.append(limit)
    frame = pd.DataFrame.from_records(conn.execute(sql, params).fetchall(), columns=columns)
    frame["delivered_at"] = _utc(frame["delivered_at"])
    frame["success"] = frame["success"].astype("bool")
    return frame


def redeliveries_of(conn: sqlite3.Connection, delivery_id: str) -> pd.DataFrame:
    """The audit rows of every redelivery requested for ``delivery_id``, newest first."""
    columns = ["requested_at", "outcome", "new_delivery_id", "new_success", "new_status", "error", "requested_by", "batch_id"]
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM redeliveries WHERE delivery_id = ? ORDER BY requested_at DESC, id DESC LIMIT 100",
        (delivery_id,),
    ).fetchall()
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["requested_at"] = _utc(frame["requested_at"])
    return frame


def redelivered_attempts(conn: sqlite3.Connection, delivery_ids: tuple[str, ...]) -> dict[str, str]:
    """Of the entries redelivered among ``delivery_ids``, each new attempt's id and who asked (by the audit)."""
    if not delivery_ids:
        return {}
    marks = ", ".join("?" for _ in delivery_ids)
    rows = conn.execute(
        f"SELECT new_delivery_id, requested_by FROM redeliveries WHERE delivery_id IN ({marks}) "
        "AND new_delivery_id IS NOT NULL", delivery_ids,
    ).fetchall()
    return {new_id: by for new_id, by in rows}


# -- reference data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterOptions:
    """What the sidebar offers: known webhook ids and event types, and each webhook's label
    (:func:`collectors.archive.names.webhook_label`: its short name, else its endpoint's host and path)."""

    webhooks: tuple[str, ...]
    event_types: tuple[str, ...]
    labels: tuple[tuple[str, str], ...] = ()

    def label(self, webhook_id: str) -> str:
        """``webhook_id``'s label (the id itself when the archive knows no better)."""
        return dict(self.labels).get(webhook_id) or webhook_id

    def labeled(self, webhook_id: str) -> str:
        """The label with the id at hand: ``api.example.com/hooks (whk_8cwci8gnjnj0)``."""
        label = self.label(webhook_id)
        return label if label == webhook_id else f"{label} ({webhook_id})"


def filter_options(conn: sqlite3.Connection, since: datetime) -> FilterOptions:
    """Webhooks archived or seen since ``since``; MoeGo's documented event types plus any seen since ``since``."""
    hooks = {r[0] for r in conn.execute("SELECT id FROM webhooks")}
    events = set(EVENT_TYPES)
    for row in conn.execute("SELECT event_types FROM webhooks"):
        try:
            events.update(str(e) for e in json.loads(row[0] or "[]"))
        except (json.JSONDecodeError, TypeError):
            continue
    hour = format_timestamp(since)[:13]
    for webhook_id, event_type in conn.execute(
        "SELECT DISTINCT webhook_id, event_type FROM delivery_hourly WHERE hour >= ?", (hour,)
    ):
        hooks.add(webhook_id)
        events.add(event_type)
    labels = webhook_labels(conn)
    return FilterOptions(webhooks=tuple(sorted(hooks)), event_types=tuple(sorted(events)),
                         labels=tuple(sorted((w, labels.get(w, w)) for w in hooks)))


def webhooks(conn: sqlite3.Connection) -> pd.DataFrame:
    """The archived webhook configurations (no secrets are stored: ``has_secret`` and a fingerprint only).

    JSON columns (``event_types``, ``headers``, ``retry_policy``, ``organizations``) are parsed.
    """
    cursor = conn.execute(
        "SELECT id, endpoint_url, event_types, content_type, is_active, verify_ssl, has_secret, secret_fingerprint, "
        "headers, retry_policy, organizations, created_time, updated_time, first_seen_at, last_seen_at, deleted_at "
        "FROM webhooks ORDER BY id"
    )
    columns = [d[0] for d in cursor.description]
    frame = pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
    for column in ("event_types", "organizations"):
        frame[column] = frame[column].map(lambda t: json.loads(t) if t else [])
    frame["headers"] = frame["headers"].map(_headers)
    frame["retry_policy"] = frame["retry_policy"].map(lambda t: json.loads(t) if isinstance(t, str) and t else None)
    for column in ("is_active", "verify_ssl", "has_secret"):
        frame[column] = frame[column].astype("bool")
    for column in ("created_time", "updated_time", "first_seen_at", "last_seen_at", "deleted_at"):
        frame[column] = _utc(frame[column])
    return frame


def collector_runs(conn: sqlite3.Connection, *, limit: int = 20) -> pd.DataFrame:
    """The latest collector runs, newest first."""
    columns = ["id", "started_at", "finished_at", "outcome", "trigger", "webhooks", "pages", "new_rows", "updated_rows", "error"]
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM collector_runs ORDER BY started_at DESC, id DESC LIMIT ?", (limit,)
    ).fetchall()
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["started_at"] = _utc(frame["started_at"])
    frame["finished_at"] = _utc(frame["finished_at"])
    return frame


def sync_states(conn: sqlite3.Connection) -> pd.DataFrame:
    """Per webhook: when its last sync completed, and its last error."""
    columns = ["webhook_id", "last_success_at", "last_error", "last_error_at"]
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM sync_state ORDER BY webhook_id").fetchall()
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["last_success_at"] = _utc(frame["last_success_at"])
    frame["last_error_at"] = _utc(frame["last_error_at"])
    return frame
