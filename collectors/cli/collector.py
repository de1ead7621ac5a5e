"""The collector's commands: ``collect``, ``schedule`` and ``status`` (registered in :mod:`collectors.cli`).

Thin click wrappers over :func:`collectors.collect.collect`, :mod:`collectors.scheduler` and
:func:`collectors.archive.status.archive_status`. Every failure a user can cause or fix is one line on
stderr and exit status 1; ``status`` exits 2 when something is at risk.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import click

from .. import archive
from ..archive.coverage import RETENTION, Interval
from ..archive.status import ArchiveStatus, WebhookStatus, archive_status
from ..collect import collect
from ..jobs import JobWorker
from ..config import (
    BUDGET_BOUNDS, DEADLINE_BOUNDS, OVERLAP_BOUNDS, ConfigError, Settings, format_span, parse_bounded_duration,
    parse_concurrency, parse_duration,
)
from ..redaction import scrub_secrets
from ..scheduler import default_jitter, log as schedule_log, run_schedule, stop_on_signals
from ..sync import SyncProgress
from .support import CONTEXT_SETTINGS, one_line_errors, settings_options

__all__ = ["collect_command", "schedule_command", "status_command", "format_status"]


def _duration(name: str, *, minimum: timedelta, maximum: timedelta) -> Callable[..., timedelta | None]:
    """A click callback parsing ``30s``/``10m``/``6h`` within bounds (the rule of :mod:`collectors.config`)."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
        if value is None:
            return None
        try:
            return parse_bounded_duration(name, value, (minimum, maximum))
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    return convert


_span = format_span


def _sync_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--chunk``, ``--overlap``, ``--deadline``, ``--budget`` and ``--concurrency``, shared by ``collect`` and ``schedule``."""
    func = click.option(
        "--concurrency",
        help="How many webhooks are read at once (one writer saves their pages in order); a 429 from MoeGo "
             "pauses them all and lowers it for the pass [env MOEGO_CONCURRENCY; default 4; 1..10].",
    )(func)
    func = click.option(
        "--overlap",
        help="The least each run re-reads before the last sync, for entries MoeGo is still retrying; a webhook "
             "whose retryPolicy retries longer gets its longer span [env MOEGO_SYNC_OVERLAP; default 1h; 0s..2d].",
    )(func)
    func = click.option(
        "--deadline",
        help="The most one call to MoeGo may take, retries and waits included "
             "[env MOEGO_DEADLINE; default 2m; 1s..1h].",
    )(func)
    func = click.option(
        "--budget",
        help="The most one pass may take; past it the pass stops between pages and the next one resumes "
             "[env MOEGO_PASS_BUDGET; default 2h; 1m..1d].",
    )(func)
    func = click.option(
        "--chunk", default="1d", show_default=True,
        callback=_duration("--chunk", minimum=timedelta(minutes=1), maximum=RETENTION),
        help="Length of the time slices the window is read in (one committed resume point per page).",
    )(func)
    return func


def _with_sync_flags(settings: Settings, overlap: str | None, deadline: str | None, budget: str | None,
                     concurrency: str | None = None) -> Settings:
    """``settings`` with the sync flags given, parsed and bounded by the same rule as their ``MOEGO_*`` variables."""
    try:
        if concurrency is not None:
            settings = dataclasses.replace(settings, concurrency=parse_concurrency(concurrency))
        if overlap is not None:
            settings = dataclasses.replace(settings, overlap=parse_bounded_duration(
                "the overlap (--overlap, MOEGO_SYNC_OVERLAP)", overlap, OVERLAP_BOUNDS))
        if deadline is not None:
            settings = dataclasses.replace(settings, deadline_s=parse_bounded_duration(
                "the call deadline (--deadline, MOEGO_DEADLINE)", deadline, DEADLINE_BOUNDS).total_seconds())
        if budget is not None:
            settings = dataclasses.replace(settings, pass_budget=parse_bounded_duration(
                "the pass budget (--budget, MOEGO_PASS_BUDGET)", budget, BUDGET_BOUNDS))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


class _ProgressBars:
    """One ``click.progressbar`` on stderr for the webhooks being backfilled (long windows), only on a terminal.

    Webhooks are read several at once, so the bar shows the mean of their fractions.
    """

    SCALE = 1000

    def __init__(self, *, threshold: timedelta) -> None:
        self.enabled = sys.stderr.isatty()
        self.threshold = threshold
        self._fractions: dict[str, float] = {}
        self._bar: Any = None
        self._shown = 0

    def __call__(self, progress: SyncProgress) -> None:
        if not self.enabled or progress.window.end - progress.window.start <= self.threshold:
            return
        self._fractions[progress.webhook_id] = progress.fraction
        if self._bar is None:
            self._bar = click.progressbar(length=self.SCALE, label="backfill", file=sys.stderr, show_eta=True,
                                          show_percent=True)
            self._bar.__enter__()
            self._shown = 0
        target = int(sum(self._fractions.values()) / len(self._fractions) * self.SCALE)
        if target > self._shown:
            self._bar.update(target - self._shown)
            self._shown = target

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@click.command("collect", context_settings=CONTEXT_SETTINGS)
@settings_options
@_sync_options
@one_line_errors
def collect_command(settings: Settings, chunk: timedelta, overlap: str | None, deadline: str | None,
                    budget: str | None, concurrency: str | None) -> None:
    """Archive every webhook's new and changed deliveries, once (for cron or a systemd timer)."""
    settings = _with_sync_flags(settings, overlap, deadline, budget, concurrency)
    settings.require_api_key()  # a configuration error is not a run: say so before touching the archive
    stop = threading.Event()
    bars = _ProgressBars(threshold=chunk)

    def on_signal(name: str) -> None:
        bars.close()
        click.echo(f"{name}: stopping after the current page…", err=True)

    try:
        with stop_on_signals(stop, on_signal):
            result = collect(settings, trigger="collect", stop=stop, progress=bars, chunk=chunk)
    finally:
        bars.close()
    for one in result.webhooks:
        click.echo(one.summary_line())
    if result.alerts is not None and result.alerts.worth_telling:
        click.echo(result.alerts.line, err=not result.alerts.ok)
    if result.outcome == "interrupted":
        raise click.ClickException(
            f"collect interrupted: {result.error or 'the next run resumes where this one stopped'}")
    if not result.ok:
        raise click.ClickException(result.error or "collect failed")
    if not result.webhooks:
        click.echo("no webhooks: MoeGo lists none for this API key")


@click.command("schedule", context_settings=CONTEXT_SETTINGS)
@settings_options
@_sync_options
@click.option("--every", default="10m", show_default=True,
              callback=_duration("--every", minimum=timedelta(seconds=1), maximum=timedelta(days=1)),
              help="Time between passes (e.g. 5m, 10m, 1h).")
@click.option("--jitter", is_flag=False, flag_value="auto", default=None, metavar="[DURATION]",
              help="Start each pass up to DURATION late, spreading load (alone: a tenth of --every, at most 5m).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address the metrics listen on (0.0.0.0 exposes them to the network).")
@one_line_errors
def schedule_command(settings: Settings, chunk: timedelta, overlap: str | None, deadline: str | None,
                     budget: str | None, every: timedelta, jitter: str | None, metrics_port: int | None,
                     metrics_host: str, concurrency: str | None) -> None:
    """Collect now and then every --every, until Ctrl-C or SIGTERM (ends between pages, exit 0)."""
    settings = _with_sync_flags(settings, overlap, deadline, budget, concurrency)
    settings.require_api_key()  # fail at once, not on every pass
    spread = _jitter(jitter, every)
    stop_metrics = _start_metrics(settings, metrics_port, metrics_host)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    saved = schedule_log.level, schedule_log.propagate
    schedule_log.addHandler(handler)
    schedule_log.setLevel(logging.INFO)
    schedule_log.propagate = False
    stop = threading.Event()
    worker = JobWorker(settings).start()  # bulk redeliveries go on while nobody has the dashboard open
    try:
        schedule_log.info("collecting every %s%s into %s", _span(every),
                          f" (+ up to {_span(spread)})" if spread else "", settings.db_path)
        with stop_on_signals(stop, lambda name: schedule_log.info("%s: stopping after the current page", name)):
            run_schedule(settings, every=every, jitter=spread, chunk=chunk, stop=stop)
    finally:
        worker.stop(timeout_s=2.0)  # a job in progress is resumed by the next worker (its audit rows say what was sent)
        stop_metrics()
        schedule_log.removeHandler(handler)
        schedule_log.setLevel(saved[0])
        schedule_log.propagate = saved[1]
    click.echo("moego-monitor schedule stopped; the archive is consistent and the next run resumes", err=True)


def _start_metrics(settings: Settings, port: int | None, host: str) -> Callable[[], None]:
    """Serve the Prometheus metrics (collectors.alerts.metrics) when asked; returns how to stop them."""
    if port is None:
        return lambda: None
    from ..alerts.metrics import serve_metrics

    try:
        stop = serve_metrics(settings.db_path, port, host)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): "
                                   "choose another --metrics-port") from None
    click.echo(f"metrics at http://{host}:{port}/metrics", err=True)
    return stop


def _jitter(value: str | None, every: timedelta) -> timedelta | None:
    if value is None:
        return None
    if value == "auto":
        return default_jitter(every)
    try:
        parsed = parse_duration(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--jitter") from None
    if parsed > every:
        raise click.BadParameter("must not exceed --every", param_hint="--jitter")
    return parsed


@click.command("status", context_settings=CONTEXT_SETTINGS)
@settings_options(moego=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--no-integrity-check", "skip_check", is_flag=True,
              help="Skip SQLite's quick_check of every page (it reads the whole file: about 10 s a GB).")
@one_line_errors(archive_access="read")
def status_command(settings: Settings, as_json: bool, skip_check: bool) -> None:
    """Show last syncs, archived spans, gaps and AT RISK parts; exit 2 when something is at risk, the collector is late
    (no complete sync for 30 min, or two of its usual intervals), or nothing is archived."""
    archive.check_readable(settings.db_path)
    with archive.open_archive(settings.db_path, readonly=True) as conn:
        if not skip_check:
            archive.check_integrity(conn, settings.db_path)  # a damaged archive exits 1, whatever its coverage says
        status = archive_status(conn, datetime.now(timezone.utc))
    # Errors stored before they were scrubbed (older versions) must not be printed with the key either.
    if as_json:
        click.echo(scrub_secrets(json.dumps(status.to_json(), indent=2), (settings.api_key,)))
    else:
        for line in format_status(status):
            click.echo(scrub_secrets(line, (settings.api_key,)))
    # Exit 2 also when no webhook has been archived at all (nothing is protected from retention), and when the
    # collector is late: a check run from elsewhere (cron, a monitoring agent) hears it before anything is at risk.
    if status.at_risk or status.collector_late or not status.webhooks:
        sys.exit(2)


# -- text rendering ---------------------------------------------------------------------------------


def format_status(status: ArchiveStatus) -> list[str]:
    """The ``status`` command's text: a block per webhook, then the last run."""
    lines: list[str] = []
    if not status.webhooks:
        lines.append("no webhooks archived yet: nothing is protected from MoeGo's 15-day retention; run 'moego-monitor collect'")
    for hook in status.webhooks:
        lines.extend(_webhook_lines(hook, status.now))
        lines.append("")
    run = status.last_run
    if run is None:
        lines.append("last run    none yet")
    else:
        finished = f" → {run.finished_at[11:16]}" if run.finished_at else ""
        lines.append(
            f"last run    #{run.id} {run.trigger} {run.outcome.upper()}, {_stamp(run.started_at)}{finished} UTC: "
            f"{_plural(run.webhooks, 'webhook')}, {_plural(run.pages, 'page')}, {run.new_rows:,} new, "
            f"{run.updated_rows:,} updated"
        )
        if run.error:
            lines.append(f"            {run.error}")
    if status.clock_warning:
        lines.append(f"CLOCK: {status.clock_warning}")
    if status.collector_late and status.collection and status.collection.last_complete:
        state = status.collection
        rhythm = f"; passes usually start every {_ago(state.usual_interval)}" if state.usual_interval else ""
        lines.append(f"LATE: no complete sync for {_ago(status.now - state.last_complete)} (the last ended "
                     f"{_when(state.last_complete)}{rhythm}): is the collector running? (last run above)")
    if status.at_risk:
        lines.append("AT RISK: entries MoeGo deletes within 48 h are not archived: run 'moego-monitor collect' now")
    return lines


def _webhook_lines(hook: WebhookStatus, now: datetime) -> list[str]:
    state = "deleted upstream (archive kept)" if hook.deleted_at else ("active" if hook.is_active else "inactive")
    lines = [f"{hook.webhook_id}  {hook.endpoint_url or '(unknown endpoint)'}  [{state}]"]
    if hook.last_success_at:
        lines.append(f"  last sync   {_when(hook.last_success_at)} ({_ago(now - hook.last_success_at)} ago)")
    else:
        lines.append("  last sync   never completed")
    if hook.resuming:
        lines.append("  resuming    an interrupted sync resumes on the next run")
    if hook.last_error:
        lines.append(f"  last error  {_when(hook.last_error_at)}: {hook.last_error}")
    if hook.oldest and hook.newest:
        lines.append(f"  archived    {_when(hook.oldest)} → {_when(hook.newest)}")
    else:
        lines.append("  archived    nothing yet")
    if hook.deleted_at:
        return lines
    if not hook.gaps:
        lines.append("  gaps        none in the 15-day window")
    for gap in hook.gaps:
        lines.append(f"  gap         {_gap(gap, now)}")
    if hook.pending_since:
        lines.append(f"  pending     since {_when(hook.pending_since)} ({_ago(now - hook.pending_since)}): "
                     "archived by the next collect")
    for risk in hook.at_risk:
        expires = risk.start + RETENTION - now
        when = f"starts deleting it in {_ago(expires)}" if expires > timedelta(minutes=1) else "is deleting it now"
        lines.append(f"  AT RISK     {_gap(risk, now)} is not archived; MoeGo {when}")
    return lines


def _gap(gap: Interval, now: datetime) -> str:
    end = "now" if gap.end >= now else _when(gap.end)
    return f"{_when(gap.start)} → {end} ({_ago(gap.end - gap.start)})"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else "?"


def _stamp(text: str) -> str:
    return text[:16].replace("T", " ")


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
