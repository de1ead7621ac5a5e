"""``moego-monitor alerts check|list|ack|snooze|resolve|redeliver|test`` (registered in :mod:`collectors.cli`).

``list`` and ``check`` exit with status 2 while any incident is unresolved (open, acknowledged or
snoozed), for monitoring scripts; every error is one line and exit status 1.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
import sys
from datetime import datetime, timezone

import click

from .. import archive
from .support import CONTEXT_SETTINGS, one_line_errors, settings_options
from ..config import ConfigError, Settings, parse_duration
from ..alerts.config import AlertsConfigError
from ..alerts.incidents import Incident, IncidentError, acknowledge, history, list_incidents, resolve, snooze

__all__ = ["alerts_group"]


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):
        return "cli"


def _writable(settings: Settings):
    """The archive opened for writing, brought to this version's shape; it must exist already."""
    if not settings.db_path.exists():
        raise archive.ArchiveError(f"no archive at {settings.db_path}: run 'moego-monitor collect' first")
    conn = archive.connect(settings.db_path)
    archive.ensure_db_shape(conn)
    return conn


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _line(incident: Incident) -> str:
    state = incident.state.upper()
    if incident.state == "snoozed" and incident.snoozed_until:
        state += f" until {_when(incident.snoozed_until)}"
    if incident.state == "resolved":
        state += f" {_when(incident.resolved_at)} by {incident.resolved_by}"
    return f"#{incident.id:<4} {state:<14} {incident.subject}: {incident.summary} (opened {_when(incident.opened_at)})"


def _guard(func):
    """Incident and archive errors as one line."""
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except IncidentError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.Error as exc:
            raise click.ClickException(f"cannot use the archive ({exc})") from None
    wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
    return wrapper


@click.group("alerts", context_settings=CONTEXT_SETTINGS)
def alerts_group() -> None:
    """Incidents opened by the alert rules: check, list, acknowledge, snooze, resolve; test the channels."""


@alerts_group.command("check")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the unresolved incidents as JSON.")
@one_line_errors
@_guard
def check_command(settings: Settings, as_json: bool) -> None:
    """Evaluate the rules now, update incidents and send their messages; exit 2 while any is unresolved."""
    from ..alerts import run_alerts

    conn = _writable(settings)
    try:
        outcome = run_alerts(settings, conn)
        active = list_incidents(conn, active_only=True)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps({"incidents": [i.to_json() for i in active], "summary": outcome.line}, indent=2))
    else:
        click.echo(outcome.line, err=not outcome.ok)
        for incident in active:
            click.echo(_line(incident))
    if active:
        sys.exit(2)


@alerts_group.command("list")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the incidents as JSON.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="At most this many.")
@one_line_errors
@_guard
def list_command(settings: Settings, as_json: bool, limit: int) -> None:
    """Incidents, unresolved first, with rule, webhook, state and times; exit 2 while any is unresolved."""
    archive.check_readable(settings.db_path)
    conn = archive.connect(settings.db_path, readonly=True)
    try:
        incidents = list_incidents(conn, limit=limit)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps({"incidents": [i.to_json() for i in incidents]}, indent=2))
    elif not incidents:
        click.echo("no incidents")
    else:
        for incident in incidents:
            click.echo(_line(incident))
    if any(i.active for i in incidents):
        sys.exit(2)


def _by_option(func):
    return click.option("--by", help="Who you are, for the incident's history [default: cli (your login)].")(func)


@alerts_group.command("ack")
@settings_options
@click.argument("incident_id", type=int)
@_by_option
@one_line_errors
@_guard
def ack_command(settings: Settings, incident_id: int, by: str | None) -> None:
    """Acknowledge an incident: no more reminders; it still resolves when the condition clears."""
    conn = _writable(settings)
    try:
        incident = acknowledge(conn, incident_id, by=_who(by))
    finally:
        conn.close()
    click.echo(_line(incident))


@alerts_group.command("snooze")
@settings_options
@click.argument("incident_id", type=int)
@click.option("--for", "span", required=True, help="How long: 30m, 2h, 1d.")
@_by_option
@one_line_errors
@_guard
def snooze_command(settings: Settings, incident_id: int, span: str, by: str | None) -> None:
    """Snooze an incident for a span: no reminders until then; open again afterwards."""
    try:
        length = parse_duration(span)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    conn = _writable(settings)
    try:
        incident = snooze(conn, incident_id, length, by=_who(by))
    finally:
        conn.close()
    click.echo(_line(incident))


@alerts_group.command("resolve")
@settings_options
@click.argument("incident_id", type=int)
@_by_option
@one_line_errors
@_guard
def resolve_command(settings: Settings, incident_id: int, by: str | None) -> None:
    """Resolve an incident by hand; no new one opens until its condition has cleared once."""
    from ..alerts import load_config

    try:
        dashboard_url = load_config(settings).dashboard_url
    except AlertsConfigError:
        dashboard_url = ""
    conn = _writable(settings)
    try:
        incident = resolve(conn, incident_id, by=_who(by), dashboard_url=dashboard_url)
    finally:
        conn.close()
    click.echo(_line(incident))


@alerts_group.command("show")
@settings_options
@click.argument("incident_id", type=int)
@one_line_errors
@_guard
def show_command(settings: Settings, incident_id: int) -> None:
    """One incident with its history (who did what, when) and its messages."""
    from ..alerts.incidents import get_incident, notifications

    archive.check_readable(settings.db_path)
    conn = archive.connect(settings.db_path, readonly=True)
    try:
        incident = get_incident(conn, incident_id)
        events = history(conn, incident_id)
        messages = notifications(conn, incident_id)
    finally:
        conn.close()
    click.echo(_line(incident))
    for event in events:
        click.echo(f"  {_when(event.at)}  {event.action:<14} {event.actor}" + (f": {event.note}" if event.note else ""))
    for message in messages:
        click.echo(f"  message {message.kind} to {message.channel}: {message.status}"
                   + (f" ({message.error})" if message.error else ""))


@alerts_group.command("redeliver")
@settings_options
@click.argument("incident_id", type=int)
@click.option("--yes", is_flag=True, help="Send without asking (after showing the count).")
@_by_option
@one_line_errors
@_guard
def redeliver_command(settings: Settings, incident_id: int, yes: bool, by: str | None) -> None:
    """Redeliver an incident's failed events that never succeeded (counted first, rate-limited, audited)."""
    from ..alerts.incidents import get_incident
    from ..alerts.recovery import recovery_plan, redeliver_incident

    settings.require_api_key()
    conn = _writable(settings)
    try:
        plan = recovery_plan(conn, get_incident(conn, incident_id))
        click.echo(f"{len(plan.to_send):,} failed events to redeliver, {len(plan.skipped):,} skipped "
                   "(later succeeded, duplicate, or deleted by MoeGo)")
        if not plan.to_send:
            return
        if not yes and not click.confirm("Redeliver them?", default=False):
            raise click.ClickException("nothing sent")
        result = redeliver_incident(settings, conn, incident_id, by=_who(by))
    finally:
        conn.close()
    click.echo(f"redelivered: {result.summary}")


@alerts_group.command("test")
@settings_options
@one_line_errors
def test_command(settings: Settings) -> None:
    """Send a test message to every channel and say which failed and why (exit 1 if any did)."""
    from ..alerts import load_config
    from ..alerts.notify import send_test

    config = load_config(settings)
    if not config.channels:
        raise click.ClickException(
            f"no channels configured{' in ' + str(config.path) if config.path else ''}: add [[alerts.channels]] "
            "to the configuration (see the README)")
    results = send_test(config, secrets=[settings.api_key] if settings.api_key else [])
    failed = 0
    for channel, error in results:
        if error is None:
            click.echo(f"ok      {channel.name} ({channel.shown})")
        else:
            failed += 1
            click.echo(f"FAILED  {channel.name}: {error}")
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} channels failed")
