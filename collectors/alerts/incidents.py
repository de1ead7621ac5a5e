"""Incidents: their storage in the archive, their states, and the history of what was done to them.

States and who moves between them::

    (rule fires) -> open --ack--> acknowledged
                    open --snooze--> snoozed --(time passes)--> open
                    open | acknowledged | snoozed --(condition clears, or a person)--> resolved

There is at most one unresolved incident per rule and webhook (a unique index says so), so ten
passes that see the same condition update one incident. Every change is an ``incident_events`` row
with its time and who did it (``moego-monitor`` for the rules engine, else the name given).

Resolving by hand while the condition still holds marks the incident ``holding``: the rule does
not open a new incident until its condition has cleared once (so a person's "I know, it is being
handled" is not answered by a new alert at the next pass). Snooze for a span instead to be
reminded once it has passed.

Messages are queued in ``incident_notifications`` (an outbox) in the same transaction as the change
they announce; :mod:`collectors.alerts.notify` sends them. Reading functions take a plain
``sqlite3.Connection`` (read-only is enough); changing functions an archive opened for writing.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from .. import archive
from ..models import format_timestamp, parse_timestamp
from .config import DELIVERY_KINDS

__all__ = [
    "STATES",
    "ACTIVE_STATES",
    "ENGINE",
    "IncidentError",
    "Incident",
    "IncidentEvent",
    "Notification",
    "list_incidents",
    "get_incident",
    "active_count",
    "history",
    "notifications",
    "acknowledge",
    "snooze",
    "resolve",
    "add_event",
    "queue_message",
    "message_for",
]

STATES: tuple[str, ...] = ("open", "acknowledged", "snoozed", "resolved")
#: States of an incident that is not over.
ACTIVE_STATES: tuple[str, ...] = ("open", "acknowledged", "snoozed")
#: The actor of what the rules engine does.
ENGINE = "moego-monitor"
#: The longest snooze.
MAX_SNOOZE = timedelta(days=30)
_MAX_ACTOR = 80


class IncidentError(Exception):
    """An incident action that cannot be done (no such incident, or not in a state that allows it)."""


def _time(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def _text(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


@dataclass(frozen=True)
class Incident:
    """One incident row."""

    id: int
    rule: str
    webhook_id: str
    endpoint: str
    state: str
    summary: str
    opened_at: datetime
    last_seen_at: datetime
    failures_since: datetime | None
    snoozed_until: datetime | None
    last_reminded_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    holding: bool
    channels: tuple[str, ...]

    @property
    def active(self) -> bool:
        """True until it is resolved."""
        return self.state != "resolved"

    @property
    def about_deliveries(self) -> bool:
        """True when it is about failing deliveries (its failed events can be redelivered)."""
        return self.rule in DELIVERY_KINDS and bool(self.webhook_id)

    @property
    def subject(self) -> str:
        """What it is about: ``rule on endpoint`` (``rule`` alone for the whole archive)."""
        return f"{self.rule} on {self.endpoint or self.webhook_id}" if self.webhook_id else self.rule

    def failed_window(self, now: datetime) -> tuple[datetime, datetime]:
        """The span of delivery time whose failures it is about: ``[failures_since, resolved_at or now)``."""
        start = self.failures_since or self.opened_at
        end = self.resolved_at or now
        return start, max(end, start + timedelta(seconds=1))

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict, times as RFC 3339 text."""
        return {
            "id": self.id, "rule": self.rule, "webhookId": self.webhook_id, "endpoint": self.endpoint,
            "state": self.state, "summary": self.summary, "openedAt": _text(self.opened_at),
            "lastSeenAt": _text(self.last_seen_at), "snoozedUntil": _text(self.snoozed_until),
            "resolvedAt": _text(self.resolved_at), "resolvedBy": self.resolved_by,
        }


_COLUMNS = ("id, rule, webhook_id, endpoint, state, summary, opened_at, last_seen_at, failures_since, snoozed_until, "
            "last_reminded_at, resolved_at, resolved_by, holding, channels")


def _incident(row: tuple) -> Incident:
    return Incident(
        id=row[0], rule=row[1], webhook_id=row[2], endpoint=row[3], state=row[4], summary=row[5],
        opened_at=parse_timestamp(row[6]), last_seen_at=parse_timestamp(row[7]), failures_since=_time(row[8]),
        snoozed_until=_time(row[9]), last_reminded_at=_time(row[10]), resolved_at=_time(row[11]),
        resolved_by=row[12], holding=bool(row[13]), channels=tuple(json.loads(row[14] or "[]")),
    )


@dataclass(frozen=True)
class IncidentEvent:
    """One entry of an incident's history."""

    at: datetime
    action: str
    actor: str
    note: str | None


@dataclass(frozen=True)
class Notification:
    """One queued message to one channel, and how sending it went."""

    id: int
    incident_id: int
    channel: str
    kind: str
    title: str
    body: str
    queued_at: datetime
    status: str
    attempts: int
    last_attempt_at: datetime | None
    error: str | None


def list_incidents(conn: sqlite3.Connection, *, active_only: bool = False, limit: int = 200) -> list[Incident]:
    """Incidents, unresolved first (newest first), then resolved ones (newest first), at most ``limit``."""
    where = "WHERE state != 'resolved'" if active_only else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM incidents {where} ORDER BY state = 'resolved', opened_at DESC, id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_incident(r) for r in rows]


def get_incident(conn: sqlite3.Connection, incident_id: int) -> Incident:
    """The incident ``incident_id``, or :class:`IncidentError`."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise IncidentError(f"no incident #{incident_id}: 'moego-monitor alerts list' shows them")
    return _incident(row)


def active_count(conn: sqlite3.Connection) -> int:
    """How many incidents are not resolved."""
    return int(conn.execute("SELECT COUNT(*) FROM incidents WHERE state != 'resolved'").fetchone()[0])


def history(conn: sqlite3.Connection, incident_id: int) -> list[IncidentEvent]:
    """What happened to an incident, oldest first."""
    return [IncidentEvent(parse_timestamp(r[0]), r[1], r[2], r[3]) for r in conn.execute(
        "SELECT at, action, actor, note FROM incident_events WHERE incident_id = ? ORDER BY at, id", (incident_id,))]


def notifications(conn: sqlite3.Connection, incident_id: int) -> list[Notification]:
    """The messages queued for an incident, oldest first."""
    return [Notification(r[0], r[1], r[2], r[3], r[4], r[5], parse_timestamp(r[6]), r[7], r[8], _time(r[9]), r[10])
            for r in conn.execute(
                "SELECT id, incident_id, channel, kind, title, body, queued_at, status, attempts, last_attempt_at, error "
                "FROM incident_notifications WHERE incident_id = ? ORDER BY id", (incident_id,))]


def add_event(conn: sqlite3.Connection, incident_id: int, action: str, actor: str, now: datetime,
              note: str | None = None) -> None:
    """Append to an incident's history (inside the caller's transaction)."""
    conn.execute("INSERT INTO incident_events (incident_id, at, action, actor, note) VALUES (?, ?, ?, ?, ?)",
                 (incident_id, format_timestamp(now), action, actor, note))


def message_for(incident: Incident, kind: str, now: datetime, *, dashboard_url: str = "", note: str = "") -> tuple[str, str]:
    """The title and plain-text body of an ``opened``, ``reminder``, ``resolved`` or ``test`` message.

    Built only from the rule's own words and the archive's (redacted) configuration: never a body,
    a header or a URL beyond the endpoint's host and path.
    """
    prefix = {"opened": "OPEN", "reminder": "STILL OPEN", "resolved": "RESOLVED"}.get(kind, kind.upper())
    title = f"[moego-monitor] {prefix}: {incident.subject}"
    lines = []
    if kind == "resolved":
        lines.append(note or "The condition cleared.")
        lines.append(f"Was: {incident.summary}")
    else:
        lines.append(incident.summary)
    if incident.webhook_id:
        lines.append(f"Webhook: {incident.webhook_id} ({incident.endpoint})")
    lines.append(f"Incident #{incident.id}, opened {incident.opened_at:%Y-%m-%d %H:%M} UTC"
                 + (f", resolved {now:%Y-%m-%d %H:%M} UTC" if kind == "resolved" else ""))
    if kind == "resolved" and incident.about_deliveries:
        lines.append("Its failed events that never succeeded can be redelivered from the Incidents page.")
    if dashboard_url:
        lines.append(f"{dashboard_url}/incidents")
    return title[:250], "\n".join(lines)[:2000]


def queue_message(conn: sqlite3.Connection, incident: Incident, kind: str, channels: Iterable[str], now: datetime,
                  *, dashboard_url: str = "", note: str = "") -> int:
    """Queue ``kind`` for each channel (inside the caller's transaction); returns how many were queued."""
    title, body = message_for(incident, kind, now, dashboard_url=dashboard_url, note=note)
    count = 0
    for channel in channels:
        conn.execute(
            "INSERT INTO incident_notifications (incident_id, channel, kind, title, body, queued_at, status) "
            "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
            (incident.id, channel, kind, title, body, format_timestamp(now)),
        )
        count += 1
    return count


def _actor(by: str) -> str:
    text = " ".join(str(by).split())[:_MAX_ACTOR]
    if not text:
        raise IncidentError("say who you are (a name), so the incident's history records it")
    return text


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def acknowledge(conn: sqlite3.Connection, incident_id: int, *, by: str, now: datetime | None = None) -> Incident:
    """Acknowledge an open or snoozed incident: no more reminders; it still resolves when the condition clears."""
    now, actor = now or _utcnow(), _actor(by)
    with archive.transaction(conn):
        incident = get_incident(conn, incident_id)
        if incident.state not in ("open", "snoozed"):
            raise IncidentError(f"incident #{incident_id} is {incident.state}: only an open or snoozed one can be acknowledged")
        conn.execute("UPDATE incidents SET state = 'acknowledged', snoozed_until = NULL WHERE id = ?", (incident_id,))
        add_event(conn, incident_id, "acknowledged", actor, now)
        return get_incident(conn, incident_id)


def snooze(conn: sqlite3.Connection, incident_id: int, span: timedelta, *, by: str,
           now: datetime | None = None) -> Incident:
    """Snooze an unresolved incident for ``span``: no reminders until then; it is open again afterwards."""
    now, actor = now or _utcnow(), _actor(by)
    if not timedelta(0) < span <= MAX_SNOOZE:
        raise IncidentError(f"a snooze lasts more than 0 and at most {MAX_SNOOZE.days} days")
    until = now + span
    with archive.transaction(conn):
        incident = get_incident(conn, incident_id)
        if incident.state == "resolved":
            raise IncidentError(f"incident #{incident_id} is resolved: there is nothing to snooze")
        conn.execute("UPDATE incidents SET state = 'snoozed', snoozed_until = ? WHERE id = ?",
                     (format_timestamp(until), incident_id))
        add_event(conn, incident_id, "snoozed", actor, now, f"until {until:%Y-%m-%d %H:%M} UTC")
        return get_incident(conn, incident_id)


def resolve(conn: sqlite3.Connection, incident_id: int, *, by: str, now: datetime | None = None,
            dashboard_url: str = "") -> Incident:
    """Resolve an incident by hand; its channels are told who resolved it.

    The rule does not open a new incident for the same webhook until its condition has cleared once.
    """
    now, actor = now or _utcnow(), _actor(by)
    with archive.transaction(conn):
        incident = get_incident(conn, incident_id)
        if incident.state == "resolved":
            raise IncidentError(f"incident #{incident_id} is already resolved")
        conn.execute("UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = ?, holding = 1, "
                     "snoozed_until = NULL WHERE id = ?", (format_timestamp(now), actor, incident_id))
        add_event(conn, incident_id, "resolved", actor, now)
        resolved = get_incident(conn, incident_id)
        queue_message(conn, resolved, "resolved", resolved.channels, now, dashboard_url=dashboard_url,
                      note=f"Resolved by {actor}.")
        return resolved
