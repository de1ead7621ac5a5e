"""The ``schedule`` command's engine: :func:`collectors.collect.collect` every N minutes, until told to stop.

APScheduler 3.x ``BlockingScheduler`` (the scheduler is the whole process), one job with
``coalesce=True`` (passes missed while the machine slept run once), ``max_instances=1`` (a slow
pass is never overlapped by the next), a ``misfire_grace_time`` of one interval, and
``next_run_time=now`` (the first pass starts at once). A pass that fails raises inside the job;
the ``EVENT_JOB_ERROR`` listener logs it as one line and the scheduler keeps going.

Stopping: SIGINT (Ctrl-C) and SIGTERM only set the stop event. The running pass sees it between
two pages (never inside a write), ends ``interrupted`` and records that; a watcher thread then shuts
the scheduler down, waiting for the pass, and :func:`run_schedule` returns normally.

Logging goes through :data:`log` (``moego_monitor.schedule``), one line per pass, never the API key.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    SchedulerEvent,
)
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler

from .archive import ArchiveError
from .client import MoeGoClient
from .config import Settings
from .archive.runs import CollectorBusy, one_line
from .collect import CollectResult, collect
from .sync import DEFAULT_CHUNK

__all__ = ["PassFailed", "log", "run_schedule", "stop_on_signals", "default_jitter"]

log = logging.getLogger("moego_monitor.schedule")
#: The alerts' line after a pass that changed an incident or sent a message (shown by the schedule's handler).
alerts_log = logging.getLogger("moego_monitor.schedule.alerts")


class PassFailed(Exception):
    """A scheduled pass did not sync every webhook; its message is the pass's one-line error."""


def default_jitter(every: timedelta) -> timedelta:
    """The jitter ``--jitter`` adds without a value: a tenth of the interval, at most 5 minutes."""
    return min(every / 10, timedelta(minutes=5))


@contextmanager
def stop_on_signals(stop: threading.Event, on_signal: Callable[[str], None] | None = None) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM set ``stop`` (and call ``on_signal(name)``) instead of killing.

    Must be entered in the main thread. The previous handlers are restored on exit.
    """
    def handler(signum: int, frame: object) -> None:
        first = not stop.is_set()
        stop.set()
        if on_signal is not None and first:
            on_signal(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _describe_pass(result: CollectResult, seconds: float) -> str:
    counts = (f"{len(result.webhooks)} webhook{'s' if len(result.webhooks) != 1 else ''}, {result.pages:,} pages, "
              f"{result.new:,} new, {result.updated:,} updated in {seconds:.1f}s")
    why = f" ({result.error})" if result.outcome == "interrupted" and result.error else ""
    return f"pass #{result.run_id} {result.outcome}: {counts}{why}"


def _tell_alerts(result: CollectResult) -> None:
    """One line about the alerts after a pass that changed an incident, sent a message or failed to."""
    if result.alerts is not None and result.alerts.worth_telling:
        (alerts_log.info if result.alerts.ok else alerts_log.warning)(result.alerts.line)


def run_schedule(
    settings: Settings,
    *,
    every: timedelta,
    jitter: timedelta | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
    stop: threading.Event | None = None,
    client: MoeGoClient | None = None,
) -> None:
    """Run a collect pass now and then every ``every`` (plus up to ``jitter``) until ``stop`` is set.

    Returns once ``stop`` is set and the running pass (if any) has ended between pages. A failed
    pass is logged and the next one runs on time. Signals are the caller's business (see
    :func:`stop_on_signals`). ``client`` is shared by every pass (tests); by default each pass
    makes and closes its own.
    """
    if every <= timedelta(0):
        raise ValueError("the interval must be positive")
    stop = stop or threading.Event()
    scheduler = BlockingScheduler(timezone=timezone.utc)

    def one_pass() -> None:
        if stop.is_set():
            return
        began = time.monotonic()
        try:
            result = collect(settings, client=client, trigger="schedule", stop=stop, chunk=chunk)
        except (CollectorBusy, ArchiveError) as exc:
            raise PassFailed(f"pass skipped: {exc}") from None
        except sqlite3.Error as exc:
            raise PassFailed(f"pass failed: cannot write the archive at {settings.db_path} ({exc})") from None
        line = _describe_pass(result, time.monotonic() - began)
        if result.outcome == "failed":
            _tell_alerts(result)
            raise PassFailed(f"{line}; {result.error}")
        log.info(line)
        _tell_alerts(result)

    def on_error(event: JobExecutionEvent) -> None:
        exc = event.exception
        if isinstance(exc, PassFailed):
            log.error(one_line(str(exc)))
        else:
            log.error(one_line(f"pass crashed ({type(exc).__name__}: {exc}); the next pass runs on schedule"))

    def on_skipped(event: JobExecutionEvent) -> None:
        log.warning("a pass was skipped: the previous one was still running or the process was asleep")

    def on_started(event: SchedulerEvent) -> None:
        threading.Thread(target=shut_down_when_stopped, name="schedule-stop", daemon=True).start()

    def shut_down_when_stopped() -> None:
        stop.wait()
        try:
            scheduler.shutdown(wait=True)
        except SchedulerNotRunningError:
            pass

    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    scheduler.add_listener(on_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    scheduler.add_listener(on_started, EVENT_SCHEDULER_STARTED)
    seconds = every.total_seconds()
    scheduler.add_job(
        one_pass,
        "interval",
        seconds=seconds,
        jitter=jitter.total_seconds() if jitter else None,
        id="collect",
        name="collect",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(1, int(seconds)),
        next_run_time=datetime.now(timezone.utc),
    )
    # APScheduler's own log lines (job added, running, tracebacks) would break "one line a pass".
    apscheduler_logger = logging.getLogger("apscheduler")
    previous_level, previous_propagate = apscheduler_logger.level, apscheduler_logger.propagate
    apscheduler_logger.setLevel(logging.CRITICAL)
    apscheduler_logger.propagate = False
    try:
        if not stop.is_set():
            scheduler.start()
    finally:
        apscheduler_logger.setLevel(previous_level)
        apscheduler_logger.propagate = previous_propagate
