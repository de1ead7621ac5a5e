"""What a person does to an incident from the dashboard: one call each, opening the archive itself.

Pages draw and call these; they never open the archive for writing. Each returns the incident as it
is afterwards, or raises :class:`~collectors.alerts.incidents.IncidentError` with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import archive
from ..config import Settings
from .config import AlertsConfigError, load_alerts_config
from .incidents import Incident, IncidentError, acknowledge, get_incident, resolve, snooze

__all__ = ["acknowledge_incident", "snooze_incident", "resolve_incident", "QueuedRedelivery", "queue_incident_redelivery"]


@dataclass(frozen=True)
class QueuedRedelivery:
    """A recovery queued as a bulk job: its id, what it will send and skip, and the estimate shown."""

    job_id: str
    to_send: int
    skipped: int
    estimate_s: float


def acknowledge_incident(settings: Settings, incident_id: int, *, by: str) -> Incident:
    """:func:`~collectors.alerts.incidents.acknowledge` on the archive at ``settings.db_path``."""
    with archive.open_archive(settings.db_path) as conn:
        return acknowledge(conn, incident_id, by=by)


def snooze_incident(settings: Settings, incident_id: int, span: timedelta, *, by: str) -> Incident:
    """:func:`~collectors.alerts.incidents.snooze` on the archive at ``settings.db_path``."""
    with archive.open_archive(settings.db_path) as conn:
        return snooze(conn, incident_id, span, by=by)


def resolve_incident(settings: Settings, incident_id: int, *, by: str) -> Incident:
    """:func:`~collectors.alerts.incidents.resolve`; its channels are told (with the dashboard link, if configured)."""
    try:
        dashboard_url = load_alerts_config(settings.config_path, settings.environ).dashboard_url
    except AlertsConfigError:
        dashboard_url = ""  # the message still goes out, without the link
    with archive.open_archive(settings.db_path) as conn:
        return resolve(conn, incident_id, by=by, dashboard_url=dashboard_url)


def queue_incident_redelivery(settings: Settings, incident_id: int, *, by: str,
                              now: datetime | None = None) -> QueuedRedelivery:
    """Queue the incident's failed events that never succeeded as a bulk redelivery job, and return at once.

    The plan is :func:`~collectors.alerts.recovery.recovery_plan`'s; the job (:mod:`collectors.jobs`) is sent by
    a background worker within MoeGo's rate, can be followed and cancelled from any page, survives a restart,
    and writes its outcome into the incident's history when it ends. Raises ``IncidentError`` in one line
    for an incident that is not about failing deliveries or has nothing left to redeliver.
    """
    from .. import jobs
    from .recovery import recovery_plan

    now = now or datetime.now(timezone.utc)
    with archive.open_archive(settings.db_path, readonly=True) as conn:
        incident = get_incident(conn, incident_id)
        plan = recovery_plan(conn, incident, now)
        durations = jobs.recent_durations_ms(conn, [c.webhook_id for c in plan.to_send], now)
    if not plan.to_send:
        raise IncidentError(f"incident #{incident_id}: no failed event is left to redeliver "
                            f"({len(plan.skipped):,} skipped: later succeeded, duplicate, or deleted by MoeGo)")
    estimate = jobs.estimate_seconds(plan, durations, timeout_s=settings.timeout_s)
    job_id = jobs.submit_bulk(settings.db_path, plan, requested_by=by, estimate_s=estimate, now=now,
                              incident_id=incident_id)
    return QueuedRedelivery(job_id, len(plan.to_send), len(plan.skipped), estimate)
