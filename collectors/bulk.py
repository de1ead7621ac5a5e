"""Bulk redelivery: plan which failed entries of a view to send again, then send them within MoeGo's rate.

:func:`plan_bulk` skips entries MoeGo no longer holds (older than its 15-day retention,
:func:`~collectors.redelivery.expired_upstream`), entries whose event later succeeded at the same webhook,
and sends only the newest failed entry of an event. :func:`bulk_redeliver` sends the plan within
MoeGo's per-webhook rate (:class:`~collectors.ratelimit.RateLimiter`), honours ``retry_after`` on
RESOURCE_EXHAUSTED, reports progress, can be cancelled, and audits every entry of the plan (``sent``,
``failed`` or ``skipped``) under one ``batch_id``. :func:`bulk_redeliver_and_resync` is the whole
sequence a page asks for; :func:`batch_counts` reads a batch back from its audit rows.
"""

from __future__ import annotations

import collections
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Sequence

from . import archive
from .client import MoeGoClient, RetryConfig, make_client
from .config import Settings
from .ratelimit import DEFAULT_PER_MINUTE, RateLimiter
from .redelivery import (EXPIRED_UPSTREAM, GUARD_SECONDS, RESYNC_MARGIN, Candidate, RedeliveryResult, expired_upstream,
                         insert_audit, redeliver, resync, send_reserved, utcnow)

__all__ = [
    "MAX_RETRY_WAIT_S",
    "HANDED_OVER",
    "BulkPlan",
    "plan_bulk",
    "BulkProgress",
    "BulkResult",
    "bulk_redeliver",
    "new_batch_id",
    "BulkRun",
    "bulk_redeliver_and_resync",
    "batch_counts",
]

#: Wait for MoeGo's ``retry_after`` up to this long in a bulk run; a longer one (a daily quota) ends that webhook's part.
MAX_RETRY_WAIT_S = 300.0

#: Why an entry waiting to retry a 429 was not retried: its worker stalled past its lease and lost the batch.
HANDED_OVER = "not retried: the worker sending it stalled and another worker took the job over"


@dataclass(frozen=True)
class BulkPlan:
    """The entries a bulk redelivery sends, and those it skips with the reason."""

    to_send: tuple[Candidate, ...]
    skipped: tuple[tuple[Candidate, str], ...]

    @property
    def total(self) -> int:
        """Entries considered."""
        return len(self.to_send) + len(self.skipped)

    def eta_seconds(self, per_minute: int = DEFAULT_PER_MINUTE) -> float:
        """The shortest time sending takes at ``per_minute`` per webhook (webhooks send side by side)."""
        per_hook = collections.Counter(c.webhook_id for c in self.to_send)
        if not per_hook:
            return 0.0
        return 60.0 * ((max(per_hook.values()) - 1) // per_minute)


#: The first later successful delivery of an event on the same webhook. The ``+`` keeps SQLite on the event index
#: (a handful of rows) rather than the webhook-and-outcome one, which would scan every success of the webhook.
LATER_SUCCESS_SQL = ("SELECT id, delivered_at FROM deliveries WHERE event_id = ? AND +webhook_id = ? AND +success = 1 "
                     "AND delivered_at > ? ORDER BY delivered_at LIMIT 1")


def plan_bulk(conn: sqlite3.Connection, candidates: Iterable[Candidate], *, now: datetime | None = None) -> BulkPlan:
    """Decide what a bulk redelivery of failed ``candidates`` sends, in their order.

    Skipped: a repeated delivery id; an entry older than MoeGo's retention at ``now`` (default: the
    current time), which MoeGo has deleted (:data:`EXPIRED_UPSTREAM`: audited, never sent, so it
    costs no request and nothing of the rate); an entry whose event later succeeded at the same webhook (a
    delivery with the same ``event_id`` and ``webhook_id``, ``success = 1`` and a later
    ``delivered_at``); and an entry of an event with a newer failed entry among the candidates
    (only the newest is sent, so the endpoint receives the event once).
    """
    unique: dict[str, Candidate] = {}
    skipped: list[tuple[Candidate, str]] = []
    for candidate in candidates:
        if candidate.delivery_id in unique:
            skipped.append((candidate, "listed twice"))
        else:
            unique[candidate.delivery_id] = candidate
    now = now or utcnow()
    for candidate in [c for c in unique.values() if expired_upstream(c.delivered_at, now)]:
        skipped.append((candidate, EXPIRED_UPSTREAM))
        del unique[candidate.delivery_id]
    newest: dict[tuple[str, str], Candidate] = {}
    for candidate in unique.values():
        if not candidate.event_id:
            continue
        key = (candidate.webhook_id, candidate.event_id)
        held = newest.get(key)
        if held is None or (candidate.delivered_at, candidate.delivery_id) > (held.delivered_at, held.delivery_id):
            newest[key] = candidate
    to_send: list[Candidate] = []
    for candidate in unique.values():
        if candidate.event_id:
            later = conn.execute(LATER_SUCCESS_SQL,
                                 (candidate.event_id, candidate.webhook_id, candidate.delivered_at)).fetchone()
            if later is not None:
                skipped.append((candidate, f"its event later succeeded (delivery {later[0]} at {later[1]})"))
                continue
            keeper = newest[(candidate.webhook_id, candidate.event_id)]
            if keeper.delivery_id != candidate.delivery_id:
                skipped.append((candidate, f"the event's newer failed entry {keeper.delivery_id} is redelivered instead"))
                continue
        to_send.append(candidate)
    return BulkPlan(to_send=tuple(to_send), skipped=tuple(skipped))


@dataclass(frozen=True)
class BulkProgress:
    """Where a bulk redelivery stands; ``waiting_s`` > 0 while it waits for the rate limit."""

    total: int
    sent: int
    failed: int
    skipped: int
    waiting_s: float = 0.0
    last: RedeliveryResult | None = None

    @property
    def done(self) -> int:
        """Entries with a final outcome."""
        return self.sent + self.failed + self.skipped


@dataclass(frozen=True)
class BulkResult:
    """Every entry's outcome under one ``batch_id``; ``cancelled`` when it stopped before the end."""

    batch_id: str
    results: tuple[RedeliveryResult, ...] = field(default=())
    cancelled: bool = False

    def count(self, outcome: str) -> int:
        """How many entries ended with ``outcome`` (the audit's ``sent``/``failed``/``skipped``)."""
        return sum(1 for r in self.results if r.outcome == outcome)

    def verdicts(self, verdict: str) -> int:
        """How many entries' :attr:`~collectors.redelivery.RedeliveryResult.verdict` is ``verdict``."""
        return sum(1 for r in self.results if r.verdict == verdict)

    @property
    def summary(self) -> str:
        """One line of outcomes: new attempts that succeeded, redeliveries that failed (refused, or the new
        attempt failed too), entries skipped; and whether it was cancelled. The same words as
        :attr:`collectors.jobs.JobCounts.summary` reads from the audit rows."""
        line = (f"{self.verdicts('succeeded'):,} succeeded, {self.verdicts('failed'):,} failed, "
                f"{self.verdicts('skipped'):,} skipped")
        return line + (" (cancelled)" if self.cancelled else "")


def new_batch_id() -> str:
    """A fresh id grouping the audit rows of one bulk redelivery."""
    return f"bulk-{uuid.uuid4().hex[:12]}"


def _skip(conn: sqlite3.Connection, candidates: Iterable[tuple[Candidate, str]], *, now: datetime, requested_by: str,
          batch_id: str) -> list[RedeliveryResult]:
    out = []
    with archive.transaction(conn):
        for candidate, reason in candidates:
            audit_id = insert_audit(conn, candidate, now=now, outcome="skipped", error=reason,
                                     requested_by=requested_by, batch_id=batch_id)
            out.append(RedeliveryResult(candidate, "skipped", audit_id, error=reason))
    return out


def bulk_redeliver(client: MoeGoClient, conn: sqlite3.Connection, plan: BulkPlan, *, batch_id: str | None = None,
                   limiter: RateLimiter | None = None, secret_headers: Sequence[str] = (), requested_by: str = "bulk",
                   cancelled: Callable[[], bool] = lambda: False,
                   handed_over: Callable[[], bool] = lambda: False,
                   on_progress: Callable[[BulkProgress], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep, clock: Callable[[], datetime] = utcnow,
                   guard_s: float = GUARD_SECONDS, max_attempts: int = 3,
                   max_retry_wait_s: float = MAX_RETRY_WAIT_S) -> BulkResult:
    """Send ``plan`` and audit every entry of it under one batch id; returns each entry's outcome.

    Webhooks send side by side, each within ``limiter`` (default :data:`DEFAULT_PER_MINUTE` a minute);
    waits are slept in slices of at most half a second with ``on_progress`` called in between, so
    ``cancelled`` is honoured promptly. On RESOURCE_EXHAUSTED the webhook pauses for MoeGo's
    ``retry_after`` and the entry is tried again (``max_attempts`` in all); a ``retry_after`` over
    ``max_retry_wait_s`` (a daily quota) ends that webhook's part, its other entries ``skipped``.
    When cancelled, or when interrupted by an exception (e.g. Streamlit stopping the script), the
    entries not sent yet are audited as ``skipped`` before returning or re-raising. Unless
    ``handed_over()`` is true by then: the batch went to another worker (a job whose lease this one
    lost), which sends and audits those entries itself, so this one writes no row for them and only
    closes the rows it already holds (an entry waiting to retry a 429).
    """
    batch_id = batch_id or new_batch_id()
    limiter = limiter or RateLimiter()
    results: list[RedeliveryResult] = _skip(conn, plan.skipped, now=clock(), requested_by=requested_by, batch_id=batch_id)
    queues: dict[str, collections.deque[Candidate]] = collections.defaultdict(collections.deque)
    for candidate in plan.to_send:
        queues[candidate.webhook_id].append(candidate)
    reserved: dict[str, tuple[int, int]] = {}  # delivery id -> (audit id, attempts made)

    def progress(waiting: float = 0.0, last: RedeliveryResult | None = None) -> None:
        if on_progress is not None:
            counts = collections.Counter(r.outcome for r in results)
            on_progress(BulkProgress(plan.total, counts["sent"], counts["failed"], counts["skipped"], waiting, last))

    def remaining() -> list[Candidate]:
        return [c for q in queues.values() for c in q]

    def finish_unsent(reason: str) -> None:
        unsent = remaining()
        for queue in queues.values():
            queue.clear()
        others_send_them = handed_over()
        if others_send_them:
            reason = HANDED_OVER
        with archive.transaction(conn):
            for candidate in unsent:
                if candidate.delivery_id in reserved:  # its row exists (a 429 retry pending): mark it there
                    audit_id = reserved[candidate.delivery_id][0]
                    conn.execute("UPDATE redeliveries SET outcome = 'skipped', error = ? WHERE id = ?", (reason, audit_id))
                elif others_send_them:  # no row yet: the worker now holding the batch sends it and writes it
                    continue
                else:
                    audit_id = insert_audit(conn, candidate, now=clock(), outcome="skipped", error=reason,
                                             requested_by=requested_by, batch_id=batch_id)
                results.append(RedeliveryResult(candidate, "skipped", audit_id, error=reason))

    was_cancelled = False
    try:
        progress()
        while any(queues.values()):
            if cancelled():
                was_cancelled = True
                break
            wait, webhook_id = min((limiter.wait_time(w), w) for w, q in queues.items() if q)
            if wait > 0:
                progress(waiting=wait)
                sleep(min(wait, 0.5))
                continue
            candidate = queues[webhook_id].popleft()
            limiter.record(webhook_id)
            if candidate.delivery_id in reserved:
                audit_id, attempts = reserved[candidate.delivery_id]
                result = send_reserved(client, conn, candidate, audit_id, secret_headers=secret_headers, now=clock())
            else:
                attempts = 0
                result = redeliver(client, conn, candidate, requested_by=requested_by, batch_id=batch_id,
                                   secret_headers=secret_headers, guard_s=guard_s, clock=clock)
            attempts += 1
            if result.retry_after is not None:
                reserved[candidate.delivery_id] = (result.audit_id, attempts)
                if result.retry_after > max_retry_wait_s:
                    results.append(result)
                    others = list(queues[webhook_id])
                    queues[webhook_id].clear()
                    results.extend(_skip(conn, [(c, f"not sent: {result.error}") for c in others], now=clock(),
                                         requested_by=requested_by, batch_id=batch_id))
                    progress(last=result)
                    continue
                if attempts < max_attempts:
                    limiter.penalize(webhook_id, result.retry_after)
                    queues[webhook_id].appendleft(candidate)
                    continue
            reserved.pop(candidate.delivery_id, None)
            results.append(result)
            progress(last=result)
        if was_cancelled:
            finish_unsent("cancelled before sending")
    except BaseException:
        finish_unsent("cancelled before sending (the run was interrupted)")
        raise
    return BulkResult(batch_id=batch_id, results=tuple(results), cancelled=was_cancelled)


@dataclass(frozen=True)
class BulkRun:
    """What :func:`bulk_redeliver_and_resync` did: the batch, and one line per webhook re-synced."""

    result: BulkResult
    sync_lines: list[str] = field(default_factory=list)


def bulk_redeliver_and_resync(settings: Settings, plan: BulkPlan, *, batch_id: str | None = None,
                              on_progress: Callable[[BulkProgress], None] | None = None,
                              cancelled: Callable[[], bool] = lambda: False, requested_by: str = "bulk",
                              client: MoeGoClient | None = None,
                              handed_over: Callable[[], bool] = lambda: False) -> BulkRun:
    """Send ``plan`` (:func:`bulk_redeliver`), then re-sync the webhooks whose entries were sent.

    Opens the archive at ``settings.db_path`` for writing and a client without retries of its own (the
    bulk loop waits for 429s itself, where it can be cancelled), unless one is given.
    """
    conn = archive.connect(settings.db_path)
    try:
        if client is None:
            with make_client(settings, retry=RetryConfig(attempts=1)) as made:
                result = bulk_redeliver(made, conn, plan, batch_id=batch_id, on_progress=on_progress,
                                        cancelled=cancelled, handed_over=handed_over, requested_by=requested_by,
                                        secret_headers=settings.secret_headers)
        else:
            result = bulk_redeliver(client, conn, plan, batch_id=batch_id, on_progress=on_progress,
                                    cancelled=cancelled, handed_over=handed_over, requested_by=requested_by,
                                    secret_headers=settings.secret_headers)
        sent = [r for r in result.results if r.outcome == "sent"]
        lines: list[str] = []
        if sent:
            earliest = min((r.new_delivery.delivered_at for r in sent if r.new_delivery and r.new_delivery.delivered_at),
                           default=utcnow())
            lines = resync(settings, conn, {r.candidate.webhook_id for r in sent}, since=earliest - RESYNC_MARGIN,
                           client=client)
        return BulkRun(result, lines)
    finally:
        conn.close()


def batch_counts(conn: sqlite3.Connection, batch_id: str) -> dict[str, int]:
    """A batch's audit rows counted by outcome (``sent``, ``failed``, ``skipped``)."""
    rows = conn.execute(
        "SELECT outcome, COUNT(*) FROM redeliveries WHERE batch_id = ? GROUP BY outcome", (batch_id,)
    ).fetchall()
    return {outcome: count for outcome, count in rows}
