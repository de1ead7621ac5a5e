"""The archive's read model: what is archived, pending, missing and at risk, per webhook.

One model for every reader: the ``status`` command (:func:`archive_status`), the dashboard's Archive
health page (:func:`coverage_gaps`, :func:`at_risk_gaps`) and the alert rules. The terms are
:mod:`collectors.archive.coverage`'s; the one rule that names each uncovered span is
:func:`classify_gaps`:

- ``expired``: before MoeGo's 15-day retention start: deleted upstream, lost for good;
- ``pending``: the tail after the webhook's last covered interval, up to the end of what is asked
  (``now`` for ``status``): what the next collection reads. A webhook never covered has no pending
  tail: its whole window is a gap;
- ``open``: a hole still collectable.

A gap straddling the retention start is split there, so each span is wholly one kind. "At risk" are
the uncovered parts that MoeGo deletes within 48 h. How many entries lie in a gap cannot be read (they
were never collected), so :func:`at_risk_gaps` estimates them: hours x the webhook's usual rate over
the covered part of the last 15 days, from the ``delivery_hourly`` rollup.

Whether the collector is late (:class:`CollectionState`: no complete sync for 30 min, or for two of its usual
intervals) is read here too, for ``status`` and the dashboard's collector line alike.

Reads only: every function works on a read-only connection.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, Sequence

from .. import skew
from ..models import MalformedMessage, format_timestamp, parse_timestamp
from .coverage import AT_RISK_HORIZON, RETENTION, Interval, at_risk, clip, gaps, load_intervals, merge, retention_start
from .runs import RunRecord, last_run
from .schema import SCHEMA_VERSION, ArchiveError, schema_version

__all__ = [
    "GapKind",
    "Gap",
    "classify_gaps",
    "WebhookStatus",
    "ArchiveStatus",
    "archive_status",
    "STALE_AFTER",
    "CollectionState",
    "collection_state",
    "tracked_webhooks",
    "coverage_intervals",
    "WebhookGap",
    "coverage_gaps",
    "RiskyGap",
    "at_risk_gaps",
]

GapKind = Literal["expired", "pending", "open"]


class _Span:
    """What every uncovered span says of itself: its length, and when MoeGo deletes its oldest entries."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        """The span's length in hours."""
        return (self.end - self.start).total_seconds() / 3600

    @property
    def expires_at(self) -> datetime:
        """When MoeGo deletes the span's oldest entries (``start + 15 d``)."""
        return self.start + RETENTION


@dataclass(frozen=True)
class Gap(_Span):
    """An uncovered span of one webhook's timeline, named by :func:`classify_gaps`."""

    start: datetime
    end: datetime
    kind: GapKind


def classify_gaps(intervals: Sequence[Interval], since: datetime, until: datetime, *, now: datetime) -> list[Gap]:
    """The uncovered parts of ``[since, until)``, oldest first, each named ``expired``, ``pending`` or ``open``.

    See the module docstring for the rule. ``intervals`` are the webhook's coverage (any order).
    """
    covered = merge(intervals)
    window_start = retention_start(now)
    last_end = covered[-1].end if covered else None
    out: list[Gap] = []
    for hole in gaps(covered, since, until):
        parts = [hole]
        if hole.start < window_start < hole.end:
            parts = [Interval(hole.start, window_start), Interval(window_start, hole.end)]
        for part in parts:
            kind: GapKind
            if part.end <= window_start:
                kind = "expired"
            elif part.end >= until and last_end is not None and part.start >= last_end:
                kind = "pending"
            else:
                kind = "open"
            out.append(Gap(part.start, part.end, kind))
    return out


@dataclass(frozen=True)
class WebhookStatus:
    """What the archive knows about one webhook at ``now`` (see :func:`archive_status`).

    ``gaps`` are the ``open`` spans of the 15-day retention window and ``pending_since`` the start of
    its ``pending`` tail (what arrived since the last sync), both as :func:`classify_gaps` names them:
    a webhook never synced has its whole window as a gap. ``at_risk`` are the uncovered parts (gaps or pending) that MoeGo
    deletes within 48 hours. A webhook MoeGo no longer lists (``deleted_at`` set) cannot be read any
    more, so it has neither gaps nor risk: its archive is what there is.
    """

    webhook_id: str
    endpoint_url: str
    is_active: bool
    deleted_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    oldest: datetime | None
    newest: datetime | None
    resuming: bool
    gaps: tuple[Interval, ...]
    pending_since: datetime | None
    at_risk: tuple[Interval, ...]

    def to_json(self) -> dict[str, object]:
        """The status as a JSON-ready dict, times as RFC 3339 text."""
        return {
            "webhookId": self.webhook_id,
            "endpointUrl": self.endpoint_url,
            "isActive": self.is_active,
            "deletedAt": _text(self.deleted_at),
            "lastSuccessAt": _text(self.last_success_at),
            "lastError": self.last_error,
            "lastErrorAt": _text(self.last_error_at),
            "oldest": _text(self.oldest),
            "newest": _text(self.newest),
            "resuming": self.resuming,
            "gaps": [{"start": _text(g.start), "end": _text(g.end)} for g in self.gaps],
            "pendingSince": _text(self.pending_since),
            "atRisk": [{"start": _text(g.start), "end": _text(g.end)} for g in self.at_risk],
        }


#: How long without a complete sync of any webhook before the collector counts as late: the default span of the
#: ``collector_stale`` alert rule, and what the dashboard and ``status`` say.
STALE_AFTER = timedelta(minutes=30)
#: The passes whose rhythm says how often the collector runs (a dashboard's "Collect now" or a redelivery's resync
#: are extra ones), and how many of the latest are read.
_RHYTHM_TRIGGERS = ("schedule", "collect")
_RHYTHM_PASSES = 7


@dataclass(frozen=True)
class CollectionState:
    """How current the archive is: when the newest complete sync of any webhook ended (``sync_state``; None before
    the first); the newest collector pass (a redelivery's resync aside): when it started, its outcome (``running``,
    ``ok``, ``failed``, ``interrupted``) and its one-line error (secrets never included), all None before the first
    pass; and how often passes usually start: the median gap between the starts of the latest scheduled or
    command-line passes (None before two)."""

    last_complete: datetime | None
    run_started: datetime | None
    run_outcome: str | None
    run_error: str | None
    usual_interval: timedelta | None

    @property
    def late_after(self) -> timedelta:
        """How long without a complete sync is too long: :data:`STALE_AFTER`, or two of the collector's usual
        intervals when it runs less often (an hourly timer is not late 30 minutes after its last pass)."""
        return max(STALE_AFTER, 2 * self.usual_interval) if self.usual_interval else STALE_AFTER

    def late(self, now: datetime) -> bool:
        """True when a complete sync has happened, and the newest ended :attr:`late_after` before ``now`` or earlier."""
        return self.last_complete is not None and now - self.last_complete >= self.late_after

    def to_json(self, now: datetime) -> dict[str, object]:
        return {
            "late": self.late(now),
            "lastCompleteSync": _text(self.last_complete),
            "usualIntervalSeconds": self.usual_interval.total_seconds() if self.usual_interval else None,
            "lateAfterSeconds": self.late_after.total_seconds(),
        }


def collection_state(conn: sqlite3.Connection) -> CollectionState:
    """:class:`CollectionState` of the archive (three small indexed reads)."""
    (last,) = conn.execute("SELECT max(last_success_at) FROM sync_state").fetchone()
    run = conn.execute("SELECT started_at, outcome, error FROM collector_runs WHERE trigger <> 'redeliver' "
                       "ORDER BY started_at DESC, id DESC LIMIT 1").fetchone()
    started, outcome, error = run if run else (None, None, None)
    starts = [t for (text,) in conn.execute(
        f"SELECT started_at FROM collector_runs WHERE trigger IN ({', '.join('?' for _ in _RHYTHM_TRIGGERS)}) "
        "ORDER BY started_at DESC, id DESC LIMIT ?", (*_RHYTHM_TRIGGERS, _RHYTHM_PASSES)) if (t := _time(text))]
    gaps_between = sorted(newer - older for newer, older in zip(starts, starts[1:]))
    return CollectionState(_time(last), _time(started), outcome, error,
                           gaps_between[len(gaps_between) // 2] if gaps_between else None)


@dataclass(frozen=True)
class ArchiveStatus:
    """Every webhook's :class:`WebhookStatus` and the last collector run, at ``now``."""

    now: datetime
    webhooks: tuple[WebhookStatus, ...]
    last_run: RunRecord | None
    clock_skew_s: float | None = None  # what the most recent run that measured a skew found (MoeGo minus host)
    collection: CollectionState | None = None

    @property
    def collector_late(self) -> bool:
        """True when no webhook has synced completely for :attr:`CollectionState.late_after` (after a first sync)."""
        return self.collection is not None and self.collection.late(self.now)

    @property
    def at_risk(self) -> bool:
        """True when some webhook has a part of the window not archived that MoeGo deletes within 48 h."""
        return any(w.at_risk for w in self.webhooks)

    @property
    def clock_warning(self) -> str | None:
        """One line when the last measured clock skew is beyond :data:`collectors.skew.WARN_AFTER`, else ``None``."""
        return skew.warning(self.clock_skew_s)

    def to_json(self) -> dict[str, object]:
        """The whole status as a JSON-ready dict."""
        return {
            "now": _text(self.now),
            "atRisk": self.at_risk,
            "webhooks": [w.to_json() for w in self.webhooks],
            "lastRun": self.last_run.to_json() if self.last_run else None,
            "clockSkewSeconds": self.clock_skew_s,
            "clockWarning": self.clock_warning,
            "collector": self.collection.to_json(self.now) if self.collection else None,
        }


def _text(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def archive_status(conn: sqlite3.Connection, now: datetime) -> ArchiveStatus:
    """Read what the archive holds per webhook at ``now``: last sync, oldest/newest entry, gaps, risk.

    Reads only (works on a read-only connection). Webhooks are those the collector has seen, plus
    any with archived entries but no configuration row, ordered by id.
    """
    if schema_version(conn) < SCHEMA_VERSION:
        raise ArchiveError("the archive is not set up yet: run 'moego-monitor collect' first")
    hooks: dict[str, tuple[str, bool, str | None]] = {
        row[0]: (row[1], bool(row[2]), row[3])
        for row in conn.execute("SELECT id, endpoint_url, is_active, deleted_at FROM webhooks")
    }
    for (webhook_id,) in conn.execute("SELECT webhook_id FROM sync_state UNION SELECT webhook_id FROM coverage"):
        hooks.setdefault(webhook_id, ("", True, None))
    window_start = retention_start(now)
    out = []
    for webhook_id in sorted(hooks):
        endpoint_url, is_active, deleted_at = hooks[webhook_id]
        state = conn.execute(
            "SELECT last_success_at, last_error, last_error_at, page_token FROM sync_state WHERE webhook_id = ?",
            (webhook_id,),
        ).fetchone() or (None, None, None, None)
        oldest, newest = conn.execute(
            # Two subqueries, so each is one seek on (webhook_id, delivered_key) rather than a scan of the webhook.
            "SELECT (SELECT delivered_at FROM deliveries WHERE webhook_id = ? ORDER BY delivered_key LIMIT 1),"
            " (SELECT delivered_at FROM deliveries WHERE webhook_id = ? ORDER BY delivered_key DESC LIMIT 1)",
            (webhook_id, webhook_id),
        ).fetchone()
        last_success, error_at = _time(state[0]), _time(state[2])
        error_is_current = error_at is not None and (last_success is None or error_at > last_success)
        intervals = load_intervals(conn, webhook_id)
        live = deleted_at is None
        named = classify_gaps(intervals, window_start, now, now=now) if live else []
        holes = [Interval(g.start, g.end) for g in named if g.kind == "open"]
        pending = next((g.start for g in named if g.kind == "pending"), None)
        out.append(WebhookStatus(
            webhook_id=webhook_id,
            endpoint_url=endpoint_url,
            is_active=is_active,
            deleted_at=_time(deleted_at),
            last_success_at=last_success,
            last_error=state[1] if error_is_current else None,
            last_error_at=error_at if error_is_current else None,
            oldest=_time(oldest),
            newest=_time(newest),
            resuming=bool(state[3]),
            gaps=tuple(holes),
            pending_since=pending,
            at_risk=tuple(at_risk(intervals, now)) if live else (),
        ))
    measured = conn.execute(
        "SELECT clock_skew_s FROM collector_runs WHERE clock_skew_s IS NOT NULL ORDER BY started_at DESC, id DESC LIMIT 1"
    ).fetchone()
    return ArchiveStatus(now=now, webhooks=tuple(out), last_run=last_run(conn),
                         clock_skew_s=measured[0] if measured else None, collection=collection_state(conn))


# -- coverage over any span (the dashboard's Archive health page) -----------------------------------


def _time(text: str | None) -> datetime | None:
    """A stored timestamp as an aware datetime; ``None`` when missing or unreadable."""
    if not text:
        return None
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


def _selected(conn: sqlite3.Connection, webhook_ids: Sequence[str] | None, since: datetime) -> list[str]:
    """The tracked webhooks (:func:`tracked_webhooks`), narrowed to ``webhook_ids`` when given: an id the archive
    does not track (a typo, a link's made-up value, a deleted webhook) has nothing at risk and no gap."""
    tracked = tracked_webhooks(conn, since)
    if webhook_ids is None:
        return tracked
    known = set(tracked)
    return [w for w in dict.fromkeys(webhook_ids) if w in known]


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


@dataclass(frozen=True)
class WebhookGap:
    """A :class:`Gap` of one webhook."""

    webhook_id: str
    gap: Gap


def coverage_gaps(conn: sqlite3.Connection, since: datetime, until: datetime, *, now: datetime,
                  webhook_ids: Sequence[str] | None = None) -> list[WebhookGap]:
    """Every webhook's uncovered spans of ``[since, until)`` as :func:`classify_gaps` names them, oldest first.

    ``webhook_ids`` narrows :func:`tracked_webhooks` (ids it does not track are left out).
    """
    ids = _selected(conn, webhook_ids, since)
    covered = coverage_intervals(conn, since, until, ids)
    out = [WebhookGap(webhook_id, gap) for webhook_id in ids
           for gap in classify_gaps(covered.get(webhook_id, []), since, until, now=now)]
    return sorted(out, key=lambda g: (g.gap.start, g.webhook_id))


@dataclass(frozen=True)
class RiskyGap(_Span):
    """An uncovered span MoeGo deletes within the horizon, with the entries it probably holds."""

    webhook_id: str
    start: datetime
    end: datetime
    rate_per_hour: float

    @property
    def estimated_entries(self) -> int:
        """``hours x rate``, rounded up."""
        return int(math.ceil(self.hours * self.rate_per_hour - 1e-9))


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


def at_risk_gaps(conn: sqlite3.Connection, now: datetime, *, horizon: timedelta = AT_RISK_HORIZON,
                 webhook_ids: Sequence[str] | None = None) -> list[RiskyGap]:
    """The spans MoeGo deletes within ``horizon`` of ``now`` per webhook, with an estimate of their entries.

    A webhook's estimate is ``gap hours x its rate``, the rate measured over the covered part of
    the last 15 days; a webhook never covered there has no measurable rate and estimates 0 entries
    while its gap hours still count. ``webhook_ids`` narrows :func:`tracked_webhooks` (ids it does not track,
    such as a link's unknown id, are left out rather than reported as never archived).
    """
    now = now.astimezone(timezone.utc)
    window_start = now - RETENTION
    ids = _selected(conn, webhook_ids, window_start)
    covered = coverage_intervals(conn, window_start, now, ids)
    out = []
    for webhook_id in ids:
        risky = at_risk(covered.get(webhook_id, []), now, horizon=horizon)
        if not risky:
            continue
        rate = _hourly_rate(conn, webhook_id, window_start, now, covered.get(webhook_id, []))
        out.extend(RiskyGap(webhook_id, gap.start, gap.end, rate) for gap in risky)
    return out
