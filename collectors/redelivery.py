"""Redelivery: ask MoeGo to send one delivery log entry again, audited in the archive.

:func:`redeliver` calls RedeliverWebhookDelivery, writes a row to the ``redeliveries`` audit table and
saves the new attempt MoeGo returns. A guard refuses a second redelivery of the same entry within
:data:`GUARD_SECONDS`, so a double click never sends twice: the first request writes its audit row
*before* calling MoeGo (as ``failed`` with :data:`IN_FLIGHT`, updated once MoeGo answers), inside a write
transaction that also checks for a recent one, so even two dashboards racing each other send once.
:func:`resync` syncs webhooks afterwards so the final outcome of the new attempts shows, and
:func:`redeliver_and_resync` is the whole sequence a page asks for: open the archive and a client,
redeliver, re-sync.

Times are aware UTC datetimes; clocks are injectable so tests need no waiting.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

from . import archive
from .archive import writer
from .archive.coverage import RETENTION
from .client import MoeGoClient, MoeGoError, ResourceExhausted, make_client
from .config import Settings
from .models import WebhookDelivery, format_timestamp
from .sync import sync_webhook

__all__ = [
    "GUARD_SECONDS",
    "IN_FLIGHT",
    "EXPIRED_UPSTREAM",
    "DEFAULT_RETRY_AFTER_S",
    "RESYNC_MARGIN",
    "Candidate",
    "expired_upstream",
    "RedeliveryResult",
    "redeliver",
    "resync",
    "Redelivered",
    "redeliver_and_resync",
]

#: A second redelivery of the same entry within this many seconds of the first is refused.
GUARD_SECONDS = 60.0
#: The error an audit row carries while its request is in flight; left behind only if the process died meanwhile.
IN_FLIGHT = ("no answer recorded yet: the request is in flight; if this stays, moego-monitor stopped before MoeGo "
             "answered: check the entry's attempts before retrying")
#: Why an entry older than MoeGo's retention is not redelivered: MoeGo has deleted it, so it cannot.
EXPIRED_UPSTREAM = f"expired upstream (older than {RETENTION.days} days)"
#: ``retry_after`` assumed when MoeGo limits without saying how long to wait.
DEFAULT_RETRY_AFTER_S = 60.0


#: A re-sync after a redelivery reads from this long before the new attempt, for entries logged late.
RESYNC_MARGIN = timedelta(minutes=5)


def utcnow() -> datetime:
    """The current time, aware UTC (the default clock of every action)."""
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

    MoeGo deletes log entries after :data:`~collectors.archive.coverage.RETENTION`; only the archive still has
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


def insert_audit(conn: sqlite3.Connection, candidate: Candidate, *, now: datetime, outcome: str, error: str | None,
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


def send_reserved(client: MoeGoClient, conn: sqlite3.Connection, candidate: Candidate, audit_id: int, *,
          secret_headers: Sequence[str], now: datetime) -> RedeliveryResult:
    """Call MoeGo for a reserved audit row and record its answer there (and the new attempt in ``deliveries``)."""
    try:
        new = client.redeliver(candidate.delivery_id, candidate.webhook_id)
    except MoeGoError as exc:
        message = str(exc)
        with archive.transaction(conn):
            conn.execute("UPDATE redeliveries SET outcome = 'failed', error = ? WHERE id = ?", (message, audit_id))
        retry_after = None
        if isinstance(exc, ResourceExhausted):
            retry_after = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S
        return RedeliveryResult(candidate, "failed", audit_id, error=message, retry_after=retry_after)
    with archive.transaction(conn):
        conn.execute(
            "UPDATE redeliveries SET outcome = 'sent', new_delivery_id = ?, new_success = ?, new_status = ?, error = NULL "
            "WHERE id = ?",
            (new.id, int(new.success), new.response_status, audit_id),
        )
        if new.delivered_at is not None:
            writer.save_deliveries(conn, [new], seen_at=now, secret_headers=secret_headers)
    return RedeliveryResult(candidate, "sent", audit_id, new_delivery=new)


def redeliver(client: MoeGoClient, conn: sqlite3.Connection, candidate: Candidate, *, requested_by: str = "dashboard",
              batch_id: str | None = None, secret_headers: Sequence[str] = (), guard_s: float = GUARD_SECONDS,
              clock: Callable[[], datetime] = utcnow) -> RedeliveryResult:
    """Redeliver one entry, unless it was redelivered (or is being) within ``guard_s`` seconds.

    Always writes exactly one audit row and returns it: ``sent`` (with the new attempt, also saved
    to ``deliveries``), ``failed`` (MoeGo's error, one line) or ``skipped`` (refused by the guard).
    Never raises :class:`~collectors.client.MoeGoError`; ``conn`` must be opened for writing.
    """
    now = clock()
    with archive.transaction(conn):
        recent = _recent(conn, candidate.delivery_id, now - timedelta(seconds=guard_s))
        if recent is not None:
            requested_at, outcome = recent
            reason = (
                f"it was already redelivered at {requested_at} ({outcome}); a second redelivery within "
                f"{guard_s:g} s is refused so a double click never sends twice"
            )
            audit_id = insert_audit(conn, candidate, now=now, outcome="skipped", error=reason,
                                     requested_by=requested_by, batch_id=batch_id)
            return RedeliveryResult(candidate, "skipped", audit_id, error=reason)
        audit_id = insert_audit(conn, candidate, now=now, outcome="failed", error=IN_FLIGHT,
                                 requested_by=requested_by, batch_id=batch_id)
    return send_reserved(client, conn, candidate, audit_id, secret_headers=secret_headers, now=now)


def resync(settings: Settings, conn: sqlite3.Connection, webhook_ids: Iterable[str], *, since: datetime,
           client: MoeGoClient | None = None) -> list[str]:
    """Sync each webhook over ``[since, now)`` so redelivered attempts show up as MoeGo records them.

    Returns one line per webhook (:meth:`collectors.sync.SyncResult.summary_line`); MoeGo failures
    come back in those lines, not as exceptions. ``client`` defaults to one made from ``settings``.
    """
    lines = []
    for webhook_id in sorted(set(webhook_ids)):
        result = sync_webhook(settings, conn, webhook_id, client=client, since=since, trigger="redeliver")
        lines.append(result.summary_line())
    return lines


@dataclass(frozen=True)
class Redelivered:
    """What :func:`redeliver_and_resync` did: the redelivery, and one line per webhook re-synced."""

    result: RedeliveryResult
    sync_lines: list[str] = field(default_factory=list)


def redeliver_and_resync(settings: Settings, candidate: Candidate, *, requested_by: str = "dashboard",
                         client: MoeGoClient | None = None, now: datetime | None = None) -> Redelivered:
    """Redeliver ``candidate`` and, when MoeGo sent it, re-sync its webhook from just before the new attempt.

    Opens the archive at ``settings.db_path`` for writing and a client from ``settings`` (unless one is
    given, which is left open). MoeGo's failures come back in the result; archive failures raise.
    """
    now = now or utcnow()
    conn = archive.connect(settings.db_path)
    try:
        if client is None:
            with make_client(settings) as made:
                result = redeliver(made, conn, candidate, requested_by=requested_by,
                                   secret_headers=settings.secret_headers)
        else:
            result = redeliver(client, conn, candidate, requested_by=requested_by,
                               secret_headers=settings.secret_headers)
        lines: list[str] = []
        if result.outcome == "sent":
            new = result.new_delivery
            since = (new.delivered_at if new is not None and new.delivered_at else now) - RESYNC_MARGIN
            lines = resync(settings, conn, [candidate.webhook_id], since=since, client=client)
        return Redelivered(result, lines)
    finally:
        conn.close()
