"""What a person does to an incident from the dashboard: one call each, opening the archive itself.

Pages draw and call these; they never open the archive for writing. Each returns the incident as it
is afterwards, or raises :class:`~collectors.alerts.incidents.IncidentError` with one line.
"""

from __future__ import annotations

from datetime import timedelta

from .. import archive
from ..bulk import BulkResult
from ..config import Settings
from .config import AlertsConfigError, load_alerts_config
from .incidents import Incident, acknowledge, resolve, snooze

__all__ = ["acknowledge_incident", "snooze_incident", "resolve_incident", "redeliver_incident_failures"]


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


def redeliver_incident_failures(settings: Settings, incident_id: int, *, by: str) -> BulkResult:
    """:func:`~collectors.alerts.recovery.redeliver_incident` on the archive at ``settings.db_path``."""
    from .recovery import redeliver_incident

    with archive.open_archive(settings.db_path) as conn:
        return redeliver_incident(settings, conn, incident_id, by=by)
