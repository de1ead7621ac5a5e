"""Actions that make MoeGo send something, each one audited in the archive.

- :func:`redeliver` asks MoeGo to send one delivery log entry again (RedeliverWebhookDelivery),
  writes a row to the ``redeliveries`` audit table and saves the new attempt MoeGo returns.
  A guard refuses a second redelivery of the same entry within :data:`GUARD_SECONDS`, so a double
  click never sends twice: the first request writes its audit row *before* calling MoeGo (as
  ``failed`` with :data:`IN_FLIGHT`, updated once MoeGo answers), inside a write transaction that
  also checks for a recent one, so even two dashboards racing each other send once.
- :func:`plan_bulk` decides which failed entries of a view to send again: it skips entries MoeGo
  no longer holds (older than its 15-day retention, :func:`expired_upstream`), entries whose event
  later succeeded at the same webhook, and sends only the newest failed entry of an event.
  :func:`bulk_redeliver` sends the plan within MoeGo's per-webhook rate (:class:`RateLimiter`),
  honours ``retry_after`` on RESOURCE_EXHAUSTED, reports progress, can be cancelled, and audits
  every entry of the plan (``sent``, ``failed`` or ``skipped``) under one ``batch_id``.
- :func:`send_test_event` triggers TriggerTestWebhookDelivery and saves the resulting attempt.
- :func:`resync` syncs webhooks after a redelivery so the new attempts show up, final.

Times are aware UTC datetimes; clocks and sleeps are injectable so tests need no waiting.
"""

from __future__ import annotations

import collections
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

import sqlite_utils

from . import archive, store
from .client import MoeGoClient, MoeGoError, ResourceExhausted
from .config import Settings
from .coverage import RETENTION
from .models import WebhookDelivery, format_timestamp
from .sync import sync_webhook

__all__ = [
    "GUARD_SECONDS",
    "IN_FLIGHT",
    "DEFAULT_PER_MINUTE",
    "EXPIRED_UPSTREAM",
    "Candidate",
    "expired_upstream",
    "RedeliveryResult",
    "redeliver",
    "RateLimiter",
    "BulkPlan",
    "plan_bulk",
    "BulkProgress",
    "BulkResult",
    "bulk_redeliver",
    "new_batch_id",
    "SentTestEvent",
    "send_test_event",
    "resync",
]

#: A second redelivery of the same entry within this many seconds of the first is refused.
GUARD_SECONDS = 60.0
#: The error an audit row carries while its request is in flight; left behind only if the process died meanwhile.
IN_FLIGHT = ("no answer recorded yet: the request is in flight; if this stays, moego-monitor stopped before MoeGo "
             "answered: check the entry's attempts before retrying")
#: Redeliveries a minute per webhook. MoeGo allows 100 pushes a minute per webhook, live deliveries
#: included: 10 are left for them.
DEFAULT_PER_MINUTE = 90
#: Why an entry older than MoeGo's retention is not redelivered: MoeGo has deleted it, so it cannot.
EXPIRED_UPSTREAM = f"expired upstream (older than {RETENTION.days} days)"
#: Wait for MoeGo's ``retry_after`` up to this long in a bulk run; a longer one (a daily quota) ends that webhook's part.
MAX_RETRY_WAIT_S = 300.0
#: ``retry_after`` assumed when MoeGo limits without saying how long to wait.
DEFAULT_RETRY_AFTER_S = 60.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Candidate:
    """A delivery log entry to redeliver: its id, webhook, event and (archive-format) delivery time."""

    delivery_id: str
    webhook_id: str
    event_id: str = ""
    delivered_at: str = ""


def expired_upstream(delivered_at: str, now: datetime) -> bool:
    """True when MoeGo no longer holds an entry delivered at ``delivered_at`` (archive text): older than its retention.

    MoeGo deletes log entries after :data:`~collectors.coverage.RETENTION`; only the archive still has
    them, and MoeGo cannot redeliver them. An unknown time (``""``) is not taken as expired.
    """
    return bool(delivered_at) and delivered_at < format_timestamp(now - RETENTION)


@dataclass(frozen=True)
class RedeliveryResult:
    """What became of one redelivery request; ``audit_id`` is its row in ``redeliveries``."""

    candidate: Candidate
    outcome: str  # sent | failed | skipped
    audit_id: int
    new_delivery: WebhookDelivery | None = None
    error: str | None = None
    retry_after: float | None = None  # set when MoeGo answered RESOURCE_EXHAUSTED

    @property
    def message(self) -> str:
        """One line for a person: what happened to this entry."""
        entry = self.candidate.delivery_id
        if self.outcome == "sent" and self.new_delivery is not None:
            new = self.new_delivery
            result = f"HTTP {new.response_status}" if new.response_status else (new.error or "no response")
            verdict = "succeeded" if new.success else "failed"
            return f"Redelivered {entry}: the new attempt {new.id} {verdict} ({result})."
        if self.outcome == "skipped":
            return f"Did not redeliver {entry}: {self.error}"
        return f"Redelivery of {entry} failed: {self.error}"


def _insert_audit(conn: sqlite3.Connection, candidate: Candidate, *, now: datetime, outcome: str, error: str | None,
                  requested_by: str, batch_id: str | None) -> int:
    cursor = conn.execute(
        "INSERT INTO redeliveries (requested_at, delivery_id, webhook_id, event_id, outcome, error, requested_by, batch_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (format_timestamp(now), candidate.delivery_id, candidate.webhook_id, candidate.event_id or None, outcome,
         error, requested_by, batch_id),
    )
    return int(cursor.lastrowid or 0)


def _recent(conn: sqlite3.Connection, delivery_id: str, since: datetime) -> tuple[str, str] | None:
    """The latest non-skipped redelivery of ``delivery_id`` requested at or after ``since``: (requested_at, outcome)."""
    return conn.execute(
        "SELECT requested_at, outcome FROM redeliveries WHERE delivery_id = ? AND outcome != 'skipped' "
        "AND requested_at >= ? ORDER BY requested_at DESC, id DESC LIMIT 1",
        (delivery_id, format_timestamp(since)),
    ).fetchone()


def _send(client: MoeGoClient, db: sqlite_utils.Database, candidate: Candidate, audit_id: int, *,
          secret_headers: Sequence[str], now: datetime) -> RedeliveryResult:
    """Call MoeGo for a reserved audit row and record its answer there (and the new attempt in ``deliveries``)."""
    try:
        new = client.redeliver(candidate.delivery_id, candidate.webhook_id)
    except MoeGoError as exc:
        message = str(exc)
        with archive.transaction(db) as conn:
            conn.execute("UPDATE redeliveries SET outcome = 'failed', error = ? WHERE id = ?", (message, audit_id))
        retry_after = None
        if isinstance(exc, ResourceExhausted):
            retry_after = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S
        return RedeliveryResult(candidate, "failed", audit_id, error=message, retry_after=retry_after)
    with archive.transaction(db) as conn:
        conn.execute(
            "UPDATE redeliveries SET outcome = 'sent', new_delivery_id = ?, new_success = ?, new_status = ?, error = NULL "
            "WHERE id = ?",
            (new.id, int(new.success), new.response_status, audit_id),
        )
        if new.delivered_at is not None:
            store.save_deliveries(db, [new], seen_at=now, secret_headers=secret_headers)
    return RedeliveryResult(candidate, "sent", audit_id, new_delivery=new)


def redeliver(client: MoeGoClient, db: sqlite_utils.Database, candidate: Candidate, *, requested_by: str = "dashboard",
              batch_id: str | None = None, secret_headers: Sequence[str] = (), guard_s: float = GUARD_SECONDS,
              clock: Callable[[], datetime] = _utcnow) -> RedeliveryResult:
    """Redeliver one entry, unless it was redelivered (or is being) within ``guard_s`` seconds.

    Always writes exactly one audit row and returns it: ``sent`` (with the new attempt, also saved
    to ``deliveries``), ``failed`` (MoeGo's error, one line) or ``skipped`` (refused by the guard).
    Never raises :class:`~collectors.client.MoeGoError`; ``db`` must be opened for writing.
    """
    now = clock()
    with archive.transaction(db) as conn:
        recent = _recent(conn, candidate.delivery_id, now - timedelta(seconds=guard_s))
        if recent is not None:
            requested_at, outcome = recent
            reason = (
                f"it was already redelivered at {requested_at} ({outcome}); a second redelivery within "
                f"{guard_s:g} s is refused so a double click never sends twice"
            )
            audit_id = _insert_audit(conn, candidate, now=now, outcome="skipped", error=reason,
                                     requested_by=requested_by, batch_id=batch_id)
            return RedeliveryResult(candidate, "skipped", audit_id, error=reason)
        audit_id = _insert_audit(conn, candidate, now=now, outcome="failed", error=IN_FLIGHT,
                                 requested_by=requested_by, batch_id=batch_id)
    return _send(client, db, candidate, audit_id, secret_headers=secret_headers, now=now)


class RateLimiter:
    """At most ``limit`` sends per ``per_s`` seconds for each key (a sliding window), plus imposed pauses.

    :meth:`wait_time` says how long until a key may send, :meth:`record` notes a send, and
    :meth:`penalize` blocks a key for a while (MoeGo's ``retry_after``). ``clock`` is any monotonic
    seconds function, so tests drive it by hand.
    """

    def __init__(self, limit: int = DEFAULT_PER_MINUTE, per_s: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or per_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and per_s > 0")
        self.limit = limit
        self.per_s = per_s
        self.clock = clock
        self._sent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._blocked_until: dict[str, float] = {}

    def wait_time(self, key: str) -> float:
        """Seconds until ``key`` may send again (0 when it may send now)."""
        now = self.clock()
        sent = self._sent[key]
        while sent and sent[0] <= now - self.per_s:
            sent.popleft()
        wait = 0.0
        if len(sent) >= self.limit:
            wait = sent[len(sent) - self.limit] + self.per_s - now
        return max(wait, self._blocked_until.get(key, 0.0) - now, 0.0)

    def record(self, key: str) -> None:
        """Note that ``key`` sent now."""
        self._sent[key].append(self.clock())

    def penalize(self, key: str, seconds: float) -> None:
        """Let ``key`` send nothing for ``seconds`` from now (never shortening an existing pause)."""
        until = self.clock() + max(0.0, seconds)
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def acquire(self, key: str, sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait until ``key`` may send, note the send, and return the seconds waited."""
        waited = 0.0
        while (wait := self.wait_time(key)) > 0:
            sleep(wait)
            waited += wait
        self.record(key)
        return waited


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
    now = now or _utcnow()
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
            later = conn.execute(
                "SELECT id, delivered_at FROM deliveries WHERE event_id = ? AND webhook_id = ? AND success = 1 "
                "AND delivered_at > ? ORDER BY delivered_at LIMIT 1",
                (candidate.event_id, candidate.webhook_id, candidate.delivered_at),
            ).fetchone()
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
        """How many entries ended with ``outcome``."""
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def summary(self) -> str:
        """One line: the counts, and whether it was cancelled."""
        line = f"{self.count('sent')} sent, {self.count('failed')} failed, {self.count('skipped')} skipped"
        return line + (" (cancelled)" if self.cancelled else "")


def new_batch_id() -> str:
    """A fresh id grouping the audit rows of one bulk redelivery."""
    return f"bulk-{uuid.uuid4().hex[:12]}"


def _skip(db: sqlite_utils.Database, candidates: Iterable[tuple[Candidate, str]], *, now: datetime, requested_by: str,
          batch_id: str) -> list[RedeliveryResult]:
    out = []
    with archive.transaction(db) as conn:
        for candidate, reason in candidates:
            audit_id = _insert_audit(conn, candidate, now=now, outcome="skipped", error=reason,
                                     requested_by=requested_by, batch_id=batch_id)
            out.append(RedeliveryResult(candidate, "skipped", audit_id, error=reason))
    return out


def bulk_redeliver(client: MoeGoClient, db: sqlite_utils.Database, plan: BulkPlan, *, batch_id: str | None = None,
                   limiter: RateLimiter | None = None, secret_headers: Sequence[str] = (), requested_by: str = "bulk",
                   cancelled: Callable[[], bool] = lambda: False,
                   on_progress: Callable[[BulkProgress], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep, clock: Callable[[], datetime] = _utcnow,
                   guard_s: float = GUARD_SECONDS, max_attempts: int = 3,
                   max_retry_wait_s: float = MAX_RETRY_WAIT_S) -> BulkResult:
    """Send ``plan`` and audit every entry of it under one batch id; returns each entry's outcome.

    Webhooks send side by side, each within ``limiter`` (default :data:`DEFAULT_PER_MINUTE` a minute);
    waits are slept in slices of at most half a second with ``on_progress`` called in between, so
    ``cancelled`` is honoured promptly. On RESOURCE_EXHAUSTED the webhook pauses for MoeGo's
    ``retry_after`` and the entry is tried again (``max_attempts`` in all); a ``retry_after`` over
    ``max_retry_wait_s`` (a daily quota) ends that webhook's part, its other entries ``skipped``.
    When cancelled, or when interrupted by an exception (e.g. Streamlit stopping the script), the
    entries not sent yet are audited as ``skipped`` before returning or re-raising.
    """
    batch_id = batch_id or new_batch_id()
    limiter = limiter or RateLimiter()
    results: list[RedeliveryResult] = _skip(db, plan.skipped, now=clock(), requested_by=requested_by, batch_id=batch_id)
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
        with archive.transaction(db) as conn:
            for candidate in unsent:
                if candidate.delivery_id in reserved:  # its row exists (a 429 retry pending): mark it there
                    audit_id = reserved[candidate.delivery_id][0]
                    conn.execute("UPDATE redeliveries SET outcome = 'skipped', error = ? WHERE id = ?", (reason, audit_id))
                else:
                    audit_id = _insert_audit(conn, candidate, now=clock(), outcome="skipped", error=reason,
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
                result = _send(client, db, candidate, audit_id, secret_headers=secret_headers, now=clock())
            else:
                attempts = 0
                result = redeliver(client, db, candidate, requested_by=requested_by, batch_id=batch_id,
                                   secret_headers=secret_headers, guard_s=guard_s, clock=clock)
            attempts += 1
            if result.retry_after is not None:
                reserved[candidate.delivery_id] = (result.audit_id, attempts)
                if result.retry_after > max_retry_wait_s:
                    results.append(result)
                    others = list(queues[webhook_id])
                    queues[webhook_id].clear()
                    results.extend(_skip(db, [(c, f"not sent: {result.error}") for c in others], now=clock(),
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
class SentTestEvent:
    """The outcome of TriggerTestWebhookDelivery: MoeGo's attempt, or the one-line error."""

    webhook_id: str
    delivery: WebhookDelivery | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when MoeGo sent the test event and the endpoint answered 2xx."""
        return self.delivery is not None and self.delivery.success


def send_test_event(client: MoeGoClient, db: sqlite_utils.Database, webhook_id: str, *, event_type: str | None = None,
                    payload: bytes | None = None, secret_headers: Sequence[str] = (),
                    clock: Callable[[], datetime] = _utcnow) -> SentTestEvent:
    """Ask MoeGo to send a test event to ``webhook_id`` and save the attempt it reports in the archive.

    Never raises :class:`~collectors.client.MoeGoError`: the error comes back in ``error``.
    """
    try:
        delivery = client.trigger_test(webhook_id, event_type=event_type, payload=payload)
    except MoeGoError as exc:
        return SentTestEvent(webhook_id, error=str(exc))
    if delivery.delivered_at is not None:
        with archive.transaction(db):
            store.save_deliveries(db, [delivery], seen_at=clock(), secret_headers=secret_headers)
    return SentTestEvent(webhook_id, delivery=delivery)


def resync(settings: Settings, db: sqlite_utils.Database, webhook_ids: Iterable[str], *, since: datetime,
           client: MoeGoClient | None = None) -> list[str]:
    """Sync each webhook over ``[since, now)`` so redelivered attempts show up as MoeGo records them.

    Returns one line per webhook (:meth:`collectors.sync.SyncResult.summary_line`); MoeGo failures
    come back in those lines, not as exceptions. ``client`` defaults to one made from ``settings``.
    """
    lines = []
    for webhook_id in sorted(set(webhook_ids)):
        result = sync_webhook(settings, db, webhook_id, client=client, since=since, trigger="redeliver")
        lines.append(result.summary_line())
    return lines
