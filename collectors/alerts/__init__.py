"""Alerts and incidents: tell someone when webhooks break, and help them recover.

After every collector pass (and on ``moego-monitor alerts check``), :func:`run_alerts`:

1. loads the configuration (:mod:`.config`; a bad file is one line and nothing else happens),
2. evaluates the built-in rules on rollups and recent rows (:mod:`.rules`),
3. opens, updates, reminds and resolves incidents, queueing their messages (:mod:`.engine`,
   :mod:`.incidents`),
4. sends the queued messages through Apprise, recording failures to retry next pass (:mod:`.notify`),
5. redelivers the failed events of resolved incidents whose rule asks for it (:mod:`.recovery`).

:func:`after_pass` is the collector's hook: it never raises (but for Ctrl-C), so alerts can never
break collection. Metrics for Prometheus are in :mod:`.metrics`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..client import MoeGoError
from ..config import ConfigError, Settings
from ..archive.runs import one_line
from .config import AlertsConfig, AlertsConfigError, load_alerts_config
from .engine import Changes, apply_findings
from .notify import SendReport, deliver_pending
from .rules import evaluate_rules

__all__ = ["AlertsOutcome", "run_alerts", "after_pass", "load_config"]


@dataclass
class AlertsOutcome:
    """What one alerts run did, and one line for a person (``line``)."""

    changes: Changes | None = None
    report: SendReport | None = None
    errors: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the configuration loaded and nothing failed."""
        return not self.errors and (self.report is None or not (self.report.failed or self.report.abandoned))

    @property
    def worth_telling(self) -> bool:
        """True when something changed, was sent, or went wrong (a quiet pass says nothing about alerts)."""
        c, r = self.changes, self.report
        return bool(self.errors or self.redelivered or (c and (c.opened or c.resolved or c.reminded))
                    or (r and (r.sent or r.failed or r.abandoned)))

    @property
    def line(self) -> str:
        """``alerts: 1 opened, 0 resolved, 2 unresolved; 1 message sent, 1 failed (ops: ...)``."""
        parts = []
        if self.changes is not None:
            c = self.changes
            parts.append(f"{len(c.opened)} opened, {len(c.resolved)} resolved, {c.reminded} reminded, "
                         f"{c.still_open} unresolved")
        if self.report is not None and (self.report.sent or self.report.failed or self.report.abandoned):
            r = self.report
            parts.append(f"{r.sent} message{'s' if r.sent != 1 else ''} sent, {r.failed} failed"
                         + (f", {r.abandoned} given up" if r.abandoned else ""))
        parts.extend(self.redelivered)
        if self.report is not None and self.report.errors:
            parts.append(self.report.errors[0])
        parts.extend(self.errors)
        return one_line("alerts: " + ("; ".join(parts) or "nothing to do"))


def load_config(settings: Settings) -> AlertsConfig:
    """The alerts configuration the settings point at (built-in defaults without a file)."""
    return load_alerts_config(settings.config_path, settings.environ)


def run_alerts(settings: Settings, conn: sqlite3.Connection, *, now: datetime | None = None,
               config: AlertsConfig | None = None, client: Any = None) -> AlertsOutcome:
    """Evaluate, update incidents, notify, auto-redeliver (see the module docstring) on a writable ``conn``.

    Raises :class:`~collectors.alerts.config.AlertsConfigError` for a bad configuration file, and
    ``sqlite3.Error`` when the archive cannot be written; a channel's failure is in the outcome.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    config = config or load_config(settings)
    evaluation = evaluate_rules(conn, config, now)
    outcome = AlertsOutcome(errors=list(evaluation.errors))
    outcome.changes = apply_findings(conn, config, evaluation, now)
    secrets = [settings.api_key] if settings.api_key else []
    outcome.report = deliver_pending(conn, config, now, secrets=secrets)
    for incident in outcome.changes.resolved:
        rule = config.rule_for(incident.rule, incident.webhook_id)
        if rule is None or not rule.auto_redeliver or not incident.about_deliveries:
            continue
        from .recovery import redeliver_incident  # imports the bulk redelivery only when a rule asks for it

        try:
            result = redeliver_incident(settings, conn, incident.id, by="auto-redeliver", cap=rule.auto_redeliver_cap,
                                        now=now, client=client)
            outcome.redelivered.append(f"incident #{incident.id} redelivered: {result.summary}")
        except (ConfigError, MoeGoError) as exc:
            outcome.errors.append(f"incident #{incident.id} not redelivered: {exc}")
    return outcome


def after_pass(settings: Settings, conn: sqlite3.Connection, outcome: str) -> AlertsOutcome | None:
    """The collector's hook at the end of a pass with ``outcome``: run the alerts, never raise.

    An interrupted pass (Ctrl-C, SIGTERM) skips them, so stopping is not held up by channels.
    """
    if outcome == "interrupted":
        return None
    try:
        return run_alerts(settings, conn)
    except AlertsConfigError as exc:
        return AlertsOutcome(errors=[f"not evaluated: {exc}"])
    except sqlite3.Error as exc:
        return AlertsOutcome(errors=[f"not evaluated: cannot use the archive ({exc})"])
    except Exception as exc:  # alerts must never break collection; say what happened in one line
        return AlertsOutcome(errors=[f"not evaluated: {type(exc).__name__}: {exc}"])
