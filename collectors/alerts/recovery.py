"""Recovery: redeliver the failed events of an incident about failing deliveries, once the receiver is back.

Uses the bulk redelivery that exists (:func:`collectors.bulk.plan_bulk` and
:func:`collectors.bulk.bulk_redeliver`): counted first, sent within MoeGo's rate, audited in
``redeliveries``, skipping events that later succeeded, duplicates, and entries MoeGo has already
deleted. The incident's history records who asked and what came of it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from .. import archive
from ..bulk import BulkPlan, BulkResult, bulk_redeliver, plan_bulk
from ..redelivery import Candidate, resync
from ..client import MoeGoClient, RetryConfig, make_client
from ..config import Settings
from ..archive.when import key_of
from ..models import format_timestamp
from .incidents import Incident, IncidentError, add_event, get_incident

__all__ = ["MAX_CANDIDATES", "failed_candidates", "recovery_plan", "redeliver_incident"]

#: The most failed entries one incident's redelivery considers.
MAX_CANDIDATES = 2_000


def failed_candidates(conn: sqlite3.Connection, incident: Incident, now: datetime,
                      limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """The incident webhook's failed entries in its failure window, oldest first (an index range)."""
    start, end = incident.failed_window(now)
    rows = conn.execute(
        "SELECT id, webhook_id, event_id, delivered_at FROM deliveries WHERE webhook_id = ? AND success = 0 "
        "AND delivered_key >= ? AND delivered_key < ? ORDER BY delivered_key, id LIMIT ?",
        (incident.webhook_id, key_of(format_timestamp(start)), key_of(format_timestamp(end)), limit),
    ).fetchall()
    return [Candidate(r[0], r[1], r[2], r[3]) for r in rows]


def recovery_plan(conn: sqlite3.Connection, incident: Incident, now: datetime | None = None) -> BulkPlan:
    """What redelivering the incident's failed events would send and skip (nothing is sent)."""
    if not incident.about_deliveries:
        raise IncidentError(f"incident #{incident.id} ({incident.rule}) is not about failing deliveries")
    now = now or datetime.now(timezone.utc)
    return plan_bulk(conn, failed_candidates(conn, incident, now), now=now)


def redeliver_incident(settings: Settings, conn: sqlite3.Connection, incident_id: int, *, by: str,
                       cap: int | None = None, now: datetime | None = None,
                       client: MoeGoClient | None = None) -> BulkResult:
    """Redeliver the incident's failed events that never succeeded (at most ``cap``), then sync their webhook.

    ``conn`` must be open for writing. MoeGo's errors are in the result (audited), not raised; without
    ``client`` one is made from ``settings`` (an API key is required).
    """
    now = now or datetime.now(timezone.utc)
    incident = get_incident(conn, incident_id)
    plan = recovery_plan(conn, incident, now)
    if cap is not None and len(plan.to_send) > cap:
        plan = replace(plan, to_send=plan.to_send[-cap:])  # the newest: the oldest are the likeliest to expire meanwhile
    if client is None:
        settings.require_api_key()
        with make_client(settings, retry=RetryConfig(attempts=1)) as made:
            result = bulk_redeliver(made, conn, plan, requested_by="incident", secret_headers=settings.secret_headers)
    else:
        result = bulk_redeliver(client, conn, plan, requested_by="incident", secret_headers=settings.secret_headers)
    with archive.transaction(conn):
        add_event(conn, incident_id, "redelivered", by, now, f"failed events redelivered: {result.summary}")
    sent = [r for r in result.results if r.outcome == "sent" and r.new_delivery and r.new_delivery.delivered_at]
    if sent:
        earliest = min(r.new_delivery.delivered_at for r in sent)  # type: ignore[union-attr]
        resync(settings, conn, {incident.webhook_id}, since=earliest - timedelta(minutes=5), client=client)
    return result
