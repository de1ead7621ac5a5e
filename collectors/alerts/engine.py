"""The rules engine: turn one evaluation of the rules into incident changes and queued messages.

:func:`apply_findings` runs in one write transaction:

1. snoozes that have run out put their incidents back to ``open``;
2. a finding with an unresolved incident updates it (its summary, ``last_seen_at``); one whose
   latest incident was resolved by a person while it still held (``holding``) keeps quiet; any
   other opens an incident and queues an ``opened`` message to the rule's channels;
3. an unresolved incident whose rule was evaluated and no longer fires is resolved (``auto``) and
   its channels get a ``resolved`` message; a ``holding`` one stops holding;
4. an ``open`` incident whose reminder interval has passed queues a ``reminder``.

It returns what changed, including the incidents that resolved, for auto-redelivery.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from .. import archive
from ..models import format_timestamp
from .config import AlertsConfig
from .incidents import ENGINE, Incident, add_event, get_incident, queue_message
from .rules import Evaluation, Finding, endpoint_label

__all__ = ["Changes", "apply_findings"]


@dataclass
class Changes:
    """What one application of findings did."""

    opened: list[Incident] = field(default_factory=list)
    resolved: list[Incident] = field(default_factory=list)
    reminded: int = 0
    queued: int = 0
    still_open: int = 0


def _endpoint(conn, webhook_id: str) -> str:
    if not webhook_id:
        return ""
    row = conn.execute("SELECT endpoint_url FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
    return endpoint_label(row[0]) if row else webhook_id


def apply_findings(conn: sqlite3.Connection, config: AlertsConfig, evaluation: Evaluation, now: datetime) -> Changes:
    """Open, update, remind and resolve incidents for ``evaluation`` at ``now`` (see the module docstring)."""
    changes = Changes()
    stamp = format_timestamp(now)
    firing: dict[tuple[str, str], Finding] = {(f.rule, f.webhook_id): f for f in evaluation.findings}
    with archive.transaction(conn):
        for (incident_id,) in conn.execute(
                "SELECT id FROM incidents WHERE state = 'snoozed' AND snoozed_until <= ?", (stamp,)).fetchall():
            conn.execute("UPDATE incidents SET state = 'open', snoozed_until = NULL WHERE id = ?", (incident_id,))
            add_event(conn, incident_id, "unsnoozed", ENGINE, now, "the snooze ran out")
        active = {(r[1], r[2]): r[0] for r in conn.execute(
            "SELECT id, rule, webhook_id FROM incidents WHERE state != 'resolved'")}
        holding = {(r[1], r[2]): r[0] for r in conn.execute(
            "SELECT id, rule, webhook_id FROM incidents WHERE holding = 1")}

        for key, finding in firing.items():
            if key in active:
                conn.execute("UPDATE incidents SET summary = ?, last_seen_at = ? WHERE id = ?",
                             (finding.summary, stamp, active[key]))
                continue
            if key in holding:
                conn.execute("UPDATE incidents SET last_seen_at = ? WHERE id = ?", (stamp, holding[key]))
                continue
            rule = config.rule_for(finding.rule, finding.webhook_id)
            channels = config.channels_of(rule) if rule is not None else ()
            cursor = conn.execute(
                "INSERT INTO incidents (rule, webhook_id, endpoint, state, summary, opened_at, last_seen_at, "
                "failures_since, last_reminded_at, channels) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                (finding.rule, finding.webhook_id, _endpoint(conn, finding.webhook_id), finding.summary, stamp, stamp,
                 format_timestamp(finding.failures_since) if finding.failures_since else None, stamp,
                 json.dumps(list(channels))),
            )
            incident = get_incident(conn, int(cursor.lastrowid or 0))
            add_event(conn, incident.id, "opened", ENGINE, now, finding.summary)
            changes.queued += queue_message(conn, incident, "opened", channels, now, dashboard_url=config.dashboard_url)
            changes.opened.append(incident)

        for key, incident_id in active.items():
            if key in firing or key[0] not in evaluation.evaluated:
                continue
            conn.execute("UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = 'auto', "
                         "snoozed_until = NULL WHERE id = ?", (stamp, incident_id))
            add_event(conn, incident_id, "resolved", ENGINE, now, "the condition cleared")
            incident = get_incident(conn, incident_id)
            changes.queued += queue_message(conn, incident, "resolved", incident.channels, now,
                                            dashboard_url=config.dashboard_url)
            changes.resolved.append(incident)
        for key, incident_id in holding.items():
            if key not in firing and key[0] in evaluation.evaluated:
                conn.execute("UPDATE incidents SET holding = 0 WHERE id = ?", (incident_id,))

        for row in conn.execute(
                "SELECT id, rule, webhook_id, last_reminded_at FROM incidents WHERE state = 'open'").fetchall():
            incident_id, rule_kind, webhook_id, reminded = row
            if (rule_kind, webhook_id) not in firing:
                continue
            rule = config.rule_for(rule_kind, webhook_id)
            every = rule.remind_every if rule is not None else None
            if every is None or (reminded and reminded > format_timestamp(now - every)):
                continue
            incident = get_incident(conn, incident_id)
            conn.execute("UPDATE incidents SET last_reminded_at = ? WHERE id = ?", (stamp, incident_id))
            changes.queued += queue_message(conn, incident, "reminder", incident.channels, now,
                                            dashboard_url=config.dashboard_url)
            changes.reminded += 1
        changes.still_open = int(conn.execute("SELECT COUNT(*) FROM incidents WHERE state != 'resolved'").fetchone()[0])
    return changes
