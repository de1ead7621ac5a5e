"""One collector pass: every webhook MoeGo lists, synced into the archive under the collector lock.

:func:`collect` is what the ``collect`` and ``schedule`` commands and the dashboard's "collect now" run.
It holds the collector lock, lists the webhooks, saves their configuration, syncs each one with
:func:`collectors.sync.sync_window` (the oldest slice of every webhook first, then each in full) and
records the pass in ``collector_runs``. Up to ``settings.concurrency`` webhooks are synced at once, on
worker threads, while the calling thread is the archive's one writer (:mod:`collectors.fanout`); a 429
pauses them all and lowers the concurrency for the rest of the pass (:mod:`collectors.pacing`).

Bounds of a pass: it ends within ``settings.pass_budget`` (every call made during it ends by then,
and the budget is checked between pages), ``interrupted`` when the budget ran out, so the lock is
never held longer. Each webhook re-reads ``max(settings.overlap, its retry span)``
(:mod:`collectors.overlap`). The pass runs on MoeGo's clock: the skew measured from the ``Date``
header of its first answer (:mod:`collectors.skew`) is added to this host's time, and recorded with
the run. Error lines are scrubbed of the API key before they are stored or returned.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import archive, skew
from .fanout import ArchiveWriter, run_workers
from .pacing import Pacer
from .archive import compaction
from .archive.coverage import load_intervals, retention_start, watermark
from .archive.runs import close_abandoned_runs, collector_lock, finish_run, one_line, start_run
from .archive.writer import mark_webhooks_deleted, save_webhooks
from .client import MoeGoClient, MoeGoError, NoWebhooksListed, NotFound, PassBudgetExhausted
from .config import Settings
from .models import Webhook
from .overlap import reread_span
from .sync import (DEFAULT_CHUNK, Clock, ProgressCallback, SyncResult, client_for, describe_crash, endpoint_label,
                   scrubbed, sync_window)

__all__ = ["CollectResult", "collect"]


@dataclass
class CollectResult:
    """How one :func:`collect` pass went: per-webhook results, totals, the run row and its outcome."""

    run_id: int
    trigger: str
    outcome: str = "ok"
    error: str | None = None
    webhooks: list[SyncResult] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    alerts: Any = None  # collectors.alerts.AlertsOutcome of the rules evaluated after the pass
    concurrency: int = 1  # webhooks read at once (settings.concurrency)
    pacer: Pacer | None = None  # the pass's 429 gate and AIMD limit: its pauses, the lowest concurrency it went to
    clock_skew: timedelta | None = None  # MoeGo's clock minus this host's, measured on the pass's first answer

    @property
    def ok(self) -> bool:
        """True only when every webhook was synced completely."""
        return self.outcome == "ok"

    @property
    def new(self) -> int:
        """Entries archived for the first time, over all webhooks."""
        return sum(r.new for r in self.webhooks)

    @property
    def updated(self) -> int:
        """Archived entries whose content changed (retries), over all webhooks."""
        return sum(r.updated for r in self.webhooks)

    @property
    def pages(self) -> int:
        """Pages committed, over all webhooks."""
        return sum(r.pages for r in self.webhooks)

    @property
    def summary_lines(self) -> list[str]:
        """One line per webhook, then, when the pass did not succeed, one line saying why."""
        lines = [r.summary_line() for r in self.webhooks]
        paced = self.pacer.summary() if self.pacer is not None else None
        if paced:
            lines.append(paced)
        if self.outcome == "failed" and self.error:
            lines.append(f"collect failed: {self.error}")
        elif self.outcome == "interrupted":
            lines.append(f"collect interrupted: {self.error or 'the next run resumes where this one stopped'}")
        elif not self.webhooks:
            lines.append("no webhooks: MoeGo lists none for this API key")
        return lines




def collect(
    settings: Settings,
    *,
    client: MoeGoClient | None = None,
    trigger: str = "collect",
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    now: datetime | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
    requested_by: str | None = None,
) -> CollectResult:
    """One pass over every webhook MoeGo lists, into the archive at ``settings.db_path``.

    Holds the collector lock for the whole pass (raises :class:`collectors.archive.runs.CollectorBusy`
    at once when another collector holds it). Saves the webhooks' configuration and marks those
    MoeGo no longer lists as deleted (their archive stays); active and inactive webhooks are both
    synced, those furthest behind first. Every webhook's oldest slice at the retention edge is read
    before any webhook is read in full, so that a long backfill of one does not let the others'
    oldest entries expire. A failing webhook does not stop the others. Records the
    pass in ``collector_runs`` with outcome ``ok`` (every webhook synced), ``failed`` or
    ``interrupted`` (``stop`` was set, or ``settings.pass_budget`` ran out; the next pass resumes),
    with the clock skew it measured. MoeGo failures are reported in the
    result, not raised; archive failures raise after the run is recorded. ``requested_by`` names the
    console user who asked for the pass, in its ``collector_runs`` row. Without ``client`` and
    without an API key it raises :class:`collectors.config.ConfigError` before touching the archive.
    """
    if client is None:
        settings.require_api_key()
    archive.refuse_foreign(Path(settings.db_path))  # before the lock file: nothing is left beside another's file
    with collector_lock(settings.db_path):
        conn = archive.connect(settings.db_path)
        try:
            archive.ensure_db_shape(conn)
            clock = Clock(now)
            close_abandoned_runs(conn, clock.start)
            result = CollectResult(run_id=start_run(conn, trigger, clock.start, requested_by=requested_by),
                                   trigger=trigger,
                                   started_at=clock.start)
            try:
                _collect(settings, conn, client, result, clock=clock, stop=stop, progress=progress, chunk=chunk)
            except BaseException as exc:
                interrupted = isinstance(exc, KeyboardInterrupt)
                _finish(conn, result, clock, outcome="interrupted" if interrupted else "failed",
                        error=describe_crash(exc), settings=settings)
                raise
            _finish(conn, result, clock, outcome=result.outcome, error=result.error, settings=settings)
            from .alerts import after_pass  # rules, incidents, notifications: never raises
            result.alerts = after_pass(settings, conn, result.outcome)
            compaction.densify(conn, result.new)  # after a backfill: full index pages again
            return result
        finally:
            conn.close()


def _collect(settings: Settings, conn: sqlite3.Connection, client: MoeGoClient | None, result: CollectResult, *,
             clock: Clock, stop: threading.Event | None, progress: ProgressCallback | None,
             chunk: timedelta) -> None:
    """The body of :func:`collect`: fills ``result`` (webhook results, outcome, error)."""
    try:
        with client_for(settings, client, stop=stop) as moego, _budget(moego, settings.pass_budget), \
                _paced(moego, result, settings.concurrency):
            webhooks = _listed_webhooks(conn, moego, settings)
            result.clock_skew = skew.measure(moego.server_time, clock.at)
            moego_clock = Clock(clock.now() + skew.correction(result.clock_skew))  # from here on, MoeGo's time
            with archive.transaction(conn):
                save_webhooks(conn, webhooks, seen_at=clock.start)
                mark_webhooks_deleted(conn, [w.id for w in webhooks], seen_at=clock.start,
                                             confirmed=_confirmed_deleted(conn, moego, webhooks))
            ordered = _most_behind_first(conn, webhooks, moego_clock.start)
            _sync_all(settings, conn, moego, ordered, result, clock=moego_clock, stop=stop, progress=progress,
                      chunk=chunk)
    except PassBudgetExhausted as exc:
        result.outcome = "interrupted"
        result.error = one_line(str(exc))
        return
    except MoeGoError as exc:
        result.outcome = "failed"
        result.error = scrubbed(settings, str(exc))
        return
    if result.outcome == "interrupted":
        result.error = next((r.error for r in result.webhooks if r.outcome == "interrupted" and r.error), None)
        return
    failed = [r for r in result.webhooks if r.outcome == "failed"]
    if failed:
        result.outcome = "failed"
        first = failed[0]
        prefix = f"{len(failed)} of {len(result.webhooks)} webhooks failed; " if len(failed) > 1 else ""
        result.error = one_line(f"{prefix}{first.webhook_id}: {first.error}")


class _paced:
    """While the block runs, ``client`` calls MoeGo at the pace of one :class:`~collectors.pacing.Pacer` (the pass's)."""

    def __init__(self, client: MoeGoClient, result: CollectResult, concurrency: int) -> None:
        self._client = client
        self._saved: Pacer | None = None
        result.concurrency = concurrency
        result.pacer = self._pacer = Pacer(concurrency)

    def __enter__(self) -> None:
        self._saved = self._client.pacer
        self._client.pacer = self._pacer

    def __exit__(self, *exc: object) -> None:
        self._client.pacer = self._saved


class _budget:
    """While the block runs, every call of ``client`` and every page boundary ends by ``budget`` from now."""

    def __init__(self, client: MoeGoClient, budget: timedelta) -> None:
        self._client = client
        self._budget = budget
        self._saved: float | None = None

    def __enter__(self) -> None:
        self._saved = self._client.pass_deadline
        end = time.monotonic() + self._budget.total_seconds()
        self._client.pass_deadline = end if self._saved is None else min(end, self._saved)

    def __exit__(self, *exc: object) -> None:
        self._client.pass_deadline = self._saved


def _listed_webhooks(conn: sqlite3.Connection, moego: MoeGoClient, settings: Settings) -> list[Webhook]:
    """ListWebhooks, refusing an empty answer while the archive tracks live webhooks.

    An empty list from a key of another account (or a bad answer) must not mark every archived
    webhook deleted and pass as a successful run.
    """
    webhooks = list(moego.list_webhooks(page_size=settings.page_size))
    if not webhooks:
        tracked = conn.execute("SELECT COUNT(*) FROM webhooks WHERE deleted_at IS NULL").fetchone()[0]
        if tracked:
            raise NoWebhooksListed(
                f"MoeGo lists no webhooks for this API key, but the archive tracks {tracked}: check that "
                "MOEGO_API_KEY belongs to the right MoeGo account (nothing was marked deleted)"
            )
    return webhooks


def _confirmed_deleted(conn: sqlite3.Connection, moego: MoeGoClient, listed: list[Webhook]) -> list[str]:
    """Archived webhooks MoeGo no longer lists AND answers NOT_FOUND for: only those count as deleted.

    A webhook missing from the list but still readable is kept (and appended to ``listed`` so it
    is synced); one that cannot be checked now (any other error) is left as it was.
    """
    present = {w.id for w in listed}
    confirmed: list[str] = []
    for (webhook_id,) in conn.execute("SELECT id FROM webhooks WHERE deleted_at IS NULL").fetchall():
        if webhook_id in present:
            continue
        try:
            listed.append(moego.get_webhook(webhook_id))
        except NotFound:
            confirmed.append(webhook_id)
        except MoeGoError:
            pass
    return confirmed


def _sync_all(settings: Settings, conn: sqlite3.Connection, client: MoeGoClient, ordered: list[Webhook],
              result: CollectResult, *, clock: Clock, stop: threading.Event | None,
              progress: ProgressCallback | None, chunk: timedelta) -> None:
    """Every webhook's oldest slice first (what MoeGo deletes next), then each webhook in full.

    A long backfill of one webhook must not let the others' oldest entries expire meanwhile. A
    webhook whose slice failed is not retried in the same pass. On a stop, webhooks not yet synced
    in full are reported ``interrupted``.
    """
    if settings.concurrency > 1 and len(ordered) > 1:
        _sync_all_at_once(settings, conn, client, ordered, result, clock=clock, stop=stop, progress=progress,
                          chunk=chunk)
        return
    results: dict[str, SyncResult] = {}
    done: set[str] = set()

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    try:
        for hook in ordered:
            if stopped():
                result.outcome = "interrupted"
                return
            head = sync_window(settings, conn, client, hook.id, clock=Clock(clock.now()), since=None, stop=stop,
                         progress=None, chunk=chunk, label=endpoint_label(hook.endpoint_url), edge_only=True,
                         overlap=reread_span(hook.retry_policy, settings.overlap))
            results[hook.id] = head
            if head.outcome != "ok":
                done.add(hook.id)
            if head.outcome == "interrupted":
                result.outcome = "interrupted"
                return
        for hook in ordered:
            if hook.id in done:
                continue
            if stopped():
                result.outcome = "interrupted"
                return
            head = results[hook.id]
            full = sync_window(settings, conn, client, hook.id, clock=Clock(clock.now()), since=None, stop=stop,
                         progress=progress, chunk=chunk, label=endpoint_label(hook.endpoint_url),
                         overlap=reread_span(hook.retry_policy, settings.overlap))
            full.pages, full.new, full.updated = full.pages + head.pages, full.new + head.new, full.updated + head.updated
            results[hook.id] = full
            done.add(hook.id)
            if full.outcome == "interrupted":
                result.outcome = "interrupted"
                return
    finally:
        for webhook_id, one in results.items():
            if webhook_id not in done:
                one.outcome = "interrupted"
        result.webhooks = [results[hook.id] for hook in ordered if hook.id in results]


#: Pages each worker fetches ahead when several webhooks are read at once (0: the worker fetches them itself).
READ_AHEAD_AT_ONCE = 0


class _Either:
    """Set when either event is: the caller's stop, or the pass's own (one webhook's sync was interrupted)."""

    def __init__(self, first: threading.Event | None, second: threading.Event) -> None:
        self._events = [e for e in (first, second) if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


def _sync_all_at_once(settings: Settings, conn: sqlite3.Connection, client: MoeGoClient, ordered: list[Webhook],
                      result: CollectResult, *, clock: Clock, stop: threading.Event | None,
                      progress: ProgressCallback | None, chunk: timedelta) -> None:
    """:func:`_sync_all` with ``settings.concurrency`` webhooks read at once (:mod:`collectors.fanout`).

    The same two rounds (every oldest slice, then each webhook in full), each over a pool of worker
    threads, most-behind webhooks started first; this thread is the archive's one writer meanwhile.
    When one webhook's sync is interrupted (a stop, the budget), the others stop at their next page
    boundary and no further webhook starts: the pass ends ``interrupted``, as one at a time.
    """
    halt = threading.Event()
    stopping = _Either(stop, halt)
    results: dict[str, SyncResult] = {}
    done: set[str] = set()

    def one(writer: ArchiveWriter, hook: Webhook, edge_only: bool) -> SyncResult:
        synced = sync_window(settings, None, client, hook.id, clock=Clock(clock.now()), since=None,
                             stop=stopping, progress=None if edge_only else progress, chunk=chunk,  # type: ignore[arg-type]
                             label=endpoint_label(hook.endpoint_url), edge_only=edge_only,
                             overlap=reread_span(hook.retry_policy, settings.overlap), db=writer, read_ahead=READ_AHEAD_AT_ONCE)
        if synced.outcome == "interrupted":
            halt.set()
        return synced

    def may_start() -> bool:
        return not stopping.is_set()

    try:
        for hook, head in run_workers(conn, ordered, lambda w, h: one(w, h, True), workers=settings.concurrency,
                                      should_start=may_start):
            results[hook.id] = head
            if head.outcome != "ok":
                done.add(hook.id)
        if stopping.is_set():
            result.outcome = "interrupted"
            return
        rest = [hook for hook in ordered if hook.id not in done]
        for hook, full in run_workers(conn, rest, lambda w, h: one(w, h, False), workers=settings.concurrency,
                                      should_start=may_start):
            head = results[hook.id]
            full.pages, full.new, full.updated = full.pages + head.pages, full.new + head.new, full.updated + head.updated
            results[hook.id] = full
            done.add(hook.id)
        if stopping.is_set() or any(r.outcome == "interrupted" for r in results.values()):
            result.outcome = "interrupted"
    finally:
        for webhook_id, one_result in results.items():
            if webhook_id not in done:
                one_result.outcome = "interrupted"
        result.webhooks = [results[hook.id] for hook in ordered if hook.id in results]


def _most_behind_first(conn: sqlite3.Connection, webhooks: list[Webhook], now: datetime) -> list[Webhook]:
    """Webhooks ordered by watermark, oldest first (ties by id), so the most exposed go first."""
    edge = retention_start(now)
    return sorted(webhooks, key=lambda w: (watermark(load_intervals(conn, w.id), edge), w.id))


def _finish(conn: sqlite3.Connection, result: CollectResult, clock: Clock, *, outcome: str,
            error: str | None, settings: Settings) -> None:
    result.outcome = outcome
    result.error = scrubbed(settings, error) if error else error
    result.finished_at = clock.now()
    finish_run(conn, result.run_id, outcome=outcome, finished_at=result.finished_at, webhooks=len(result.webhooks),
               pages=result.pages, new_rows=result.new, updated_rows=result.updated, error=result.error,
               clock_skew=result.clock_skew, secrets=(settings.api_key,))
