"""Sync one webhook: copy its part of MoeGo's delivery log into the archive, incrementally, before
retention deletes it.

:func:`sync_webhook` syncs one webhook and records it as a run (after a redelivery, with ``since=``,
to fetch the new attempt); :func:`sync_window` is the same sync inside a pass that
:func:`collectors.collect.collect` runs over every webhook.

How one webhook is synced (nothing here relies on the order MoeGo lists entries in):

1. ``now`` is fixed when the sync starts. The window to read is ``[max(retention start,
   watermark - overlap), now)``; the watermark is the end of the coverage that runs without a gap
   from the retention start (see :mod:`collectors.archive.coverage`), so the first run reads all 15 days.
   The overlap re-reads recent entries, which change while MoeGo retries them.
2. The window is read in time chunks, oldest first (what expires soonest is saved first), each
   with ``ListWebhookDeliveries`` filtered on ``deliveryTime``, page by page.
3. Each page is written in the same transaction as the position to resume from (the chunk and the
   next page's token, in ``sync_state``) and, on the chunk's last page, the chunk's coverage
   interval; the writer commits a few pages per transaction (:mod:`collectors.fanout`: at most
   ``BATCH_ROWS`` entries or ``BATCH_AGE_S`` seconds), so a commit always holds whole pages with the
   positions after them. Coverage therefore never claims more than is committed. Coverage is clipped at the
   retention start of the moment the chunk's last page was read: entries older than that may have
   been deleted upstream before they were read.
4. A killed collector resumes from ``sync_state``: the saved chunk continues from the saved token
   (or from its first page if MoeGo refuses the token as INVALID_ARGUMENT; upserts make
   re-reading harmless), then the rest of the window is planned from the new watermark. A saved
   chunk reaching back to within :data:`RESUME_MARGIN` of the retention start is re-planned
   instead, because deletions at the retention edge could shift a position-based token.
5. ``stop`` (a ``threading.Event``) is checked between pages: the sync ends ``interrupted``, every
   page saved so far is committed (the writer's batch is committed before the sync returns), and the
   next one resumes.

A page that cannot be read (wrong key, unreachable host, limits outlasting the client's retries,
a malformed answer) ends that webhook's sync as ``failed`` with one line saying why; nothing of
that page is committed; the pass carries on with the next webhook. So does a page the contract
rules out (:mod:`collectors.validate`: entries outside the chunk, under another webhook, more than
asked; a chunk paging without end), checked before anything of it is saved.

Bounds: each call has the client's deadline; a pass's budget (``client.pass_deadline``, set by
:func:`collectors.collect.collect`) is checked between pages and ends every call, and the sync
then ends ``interrupted`` and the next one resumes. The overlap is the caller's (each webhook's
retry span, :mod:`collectors.overlap`); the clock is the caller's (MoeGo's time, :mod:`collectors.skew`).
Every error line is scrubbed of the API key before it is stored.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlparse


from . import archive, skew, validate
from .archive.coverage import Interval, load_intervals, record_interval, retention_start, watermark
from .archive.runs import finish_run, one_line, start_run
from .archive.writer import SaveResult, archived, save_deliveries
from .client import InvalidArgument, MalformedResponse, MoeGoClient, MoeGoError, PassBudgetExhausted, make_client
from .config import Settings
from .models import MalformedMessage, RetryPolicy, WebhookDelivery, format_timestamp, parse_timestamp
from .overlap import reread_span
from .redaction import scrub_secrets
from .fanout import ArchiveWriter, few_collections
from .prefetch import Prefetched

__all__ = [
    "DEFAULT_CHUNK",
    "EDGE_CHUNK",
    "RESUME_MARGIN",
    "SETTLE",
    "SyncProgress",
    "SyncResult",
    "ProgressCallback",
    "Clock",
    "sync_webhook",
    "sync_window",
    "client_for",
    "describe_crash",
    "endpoint_label",
    "plan_chunks",
]

#: MoeGo logs an entry when its first attempt ends, dated when it began; an attempt may take the
#: 30 s delivery timeout. Coverage therefore stops this long before the moment a chunk was read, so
#: an entry logged late always falls where the next run reads again, whatever ``--overlap`` is.
SETTLE = timedelta(seconds=60)
#: Length of the time chunks a window is read in.
DEFAULT_CHUNK = timedelta(days=1)
#: The first chunk of a window that starts at the retention edge is this short, so that it is read
#: (and committed) within moments, before MoeGo deletes more of it.
EDGE_CHUNK = timedelta(minutes=15)
#: A saved chunk is resumed from its page token only if it starts at least this far inside the
#: retention window, so that no deletion at the edge can shift entries under the token while it is read.
RESUME_MARGIN = timedelta(minutes=5)

ProgressCallback = Callable[["SyncProgress"], None]
#: How a sync reaches the archive: ``db(fn)`` runs ``fn(conn)`` where the connection lives (on this thread, or
#: on the pass's one writer thread) and returns its result; ``db.page(fn, ...)`` saves a page in the writer's
#: open batch of pages (:class:`collectors.fanout.ArchiveWriter`).
ArchiveAccess = ArchiveWriter


@dataclass(frozen=True)
class SyncProgress:
    """Where a webhook's sync stands after a committed page (for progress bars)."""

    webhook_id: str
    window: Interval
    covered_until: datetime  # the end of the last chunk completed in this sync (window.start before the first)
    pages: int
    new: int
    updated: int

    @property
    def fraction(self) -> float:
        """The share of the window read, 0.0 .. 1.0."""
        total = (self.window.end - self.window.start).total_seconds()
        if total <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.covered_until - self.window.start).total_seconds() / total))


@dataclass
class SyncResult:
    """How one webhook's sync went.

    ``outcome`` is ``ok``, ``failed`` (``error`` says why, on one line) or ``interrupted`` (stopped
    between pages; the next sync resumes). ``covered`` is the webhook's coverage after the sync,
    merged, oldest first.
    """

    webhook_id: str
    label: str = ""
    outcome: str = "ok"
    window: Interval | None = None
    pages: int = 0
    new: int = 0
    updated: int = 0
    resumed: bool = False
    error: str | None = None
    now: datetime | None = None
    covered: list[Interval] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the whole window was read."""
        return self.outcome == "ok"

    def latest_coverage(self) -> Interval | None:
        """The most recent covered interval (after a complete sync it reaches ``now``)."""
        return self.covered[-1] if self.covered else None

    def summary_line(self) -> str:
        """One line for a human: ``whk_1 host/path: 1,234 new, 5 updated, 4 pages, covered 2026-11-14 10:00 → now``."""
        name = f"{self.webhook_id} {self.label}".strip()
        counts = f"{self.new:,} new, {self.updated:,} updated, {self.pages:,} page{'s' if self.pages != 1 else ''}"
        if self.outcome == "failed":
            return f"{name}: FAILED after {counts}: {self.error}"
        if self.outcome == "interrupted":
            return f"{name}: interrupted after {counts}; the next run resumes"
        covered = self.latest_coverage()
        if covered is None or self.now is None:
            return f"{name}: {counts}, not covered yet"
        until = "now" if covered.end >= self.now - SETTLE else _short_time(covered.end)  # the settle margin reads as now
        return f"{name}: {counts}, covered {_short_time(covered.start)} → {until}"


class Clock:
    """The sync's fixed ``start`` plus a monotonic reading clock running from it.

    With ``now`` given (tests, or a caller with its own notion of MoeGo's time) both follow it;
    otherwise the wall clock in UTC.
    """

    def __init__(self, now: datetime | None = None) -> None:
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        self.start = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._origin)

    def at(self, monotonic: float) -> datetime:
        """This clock's time when ``time.monotonic()`` read ``monotonic``."""
        return self.start + timedelta(seconds=monotonic - self._origin)


# -- planning ---------------------------------------------------------------------------------------


def plan_chunks(start: datetime, end: datetime, *, length: timedelta = DEFAULT_CHUNK,
                edge: datetime | None = None) -> list[Interval]:
    """``[start, end)`` as consecutive chunks of at most ``length``, oldest first.

    When ``start`` is within :data:`EDGE_CHUNK` of ``edge`` (the retention start), the first chunk
    is cut at ``start + EDGE_CHUNK`` so the entries about to expire are committed first.
    """
    if length <= timedelta(0):
        raise ValueError("chunk length must be positive")
    chunks: list[Interval] = []
    cursor = start
    if edge is not None and start < edge + EDGE_CHUNK and start < end:
        first_end = min(end, start + min(EDGE_CHUNK, length))
        chunks.append(Interval(cursor, first_end))
        cursor = first_end
    while cursor < end:
        chunk_end = min(end, cursor + length)
        chunks.append(Interval(cursor, chunk_end))
        cursor = chunk_end
    return chunks


# -- sync_state -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Position:
    chunk: Interval
    page_token: str


def _ensure_state(conn: sqlite3.Connection, webhook_id: str) -> None:
    with archive.transaction(conn):
        conn.execute("INSERT OR IGNORE INTO sync_state (webhook_id) VALUES (?)", (webhook_id,))


def _saved_position(conn: sqlite3.Connection, webhook_id: str) -> _Position | None:
    row = conn.execute(
        "SELECT chunk_start, chunk_end, page_token FROM sync_state WHERE webhook_id = ?", (webhook_id,)
    ).fetchone()
    if not row or not row[0] or not row[1] or not row[2]:
        return None
    try:
        chunk = Interval(parse_timestamp(row[0]), parse_timestamp(row[1]))
    except ValueError:
        return None
    return _Position(chunk, row[2])


def _set_position(conn: sqlite3.Connection, webhook_id: str, position: _Position | None) -> None:
    """Save (or clear) the resume position; inside the page's transaction."""
    values = (
        (format_timestamp(position.chunk.start), format_timestamp(position.chunk.end), position.page_token)
        if position else (None, None, None)
    )
    conn.execute(
        "UPDATE sync_state SET chunk_start = ?, chunk_end = ?, page_token = ? WHERE webhook_id = ?",
        (*values, webhook_id),
    )


def _record_outcome(conn: sqlite3.Connection, webhook_id: str, *, success_at: datetime | None = None,
                    error: str | None = None, error_at: datetime | None = None) -> None:
    with archive.transaction(conn):
        if success_at is not None:
            conn.execute("UPDATE sync_state SET last_success_at = ? WHERE webhook_id = ?",
                         (format_timestamp(success_at), webhook_id))
        if error is not None and error_at is not None:
            conn.execute("UPDATE sync_state SET last_error = ?, last_error_at = ? WHERE webhook_id = ?",
                         (one_line(error), format_timestamp(error_at), webhook_id))


# -- reading ----------------------------------------------------------------------------------------


class _Stopped(Exception):
    """The stop event was set; raised between pages only."""


class _OutOfBudget(_Stopped):
    """The pass's time budget is used up; raised between pages only."""


@dataclass
class _Sync:
    """The state of one webhook's sync while it runs."""

    settings: Settings
    db: ArchiveAccess
    client: MoeGoClient
    clock: Clock
    result: SyncResult
    resumable: bool
    stop: threading.Event | None
    progress: ProgressCallback | None
    window: Interval
    covered_until: datetime
    read_ahead: int = 2

    def read_chunk(self, chunk: Interval, page_token: str = "") -> None:
        """Read one chunk from ``page_token`` (or its first page), saving page by page (each with its
        resume position; the writer commits them a few pages at a time: :mod:`collectors.fanout`)."""
        # The next page is fetched while this one is parsed and saved (collectors.prefetch); the reading thread
        # only fetches and decodes (RawDeliveryPage): the entries are parsed here, so the next request leaves as
        # soon as an answer is decoded. With read_ahead=0 this thread fetches them itself (other webhooks'
        # workers overlap the writer then).
        raw = self.client.iter_raw_delivery_pages(
            self.result.webhook_id, page_size=self.settings.page_size, start=chunk.start, end=chunk.end,
            page_token=page_token,
        )
        pages = Prefetched(raw, self.read_ahead) if self.read_ahead else raw
        guard = validate.PageGuard.for_span(chunk.end - chunk.start, self.settings.page_size, start_token=page_token)
        webhook_id = self.result.webhook_id
        try:
            while True:
                self._check_stop()
                self._commit_while_waiting(pages)
                fetched = next(pages, None)
                if fetched is None:
                    return
                page = fetched.parsed()
                deliveries = _checked(page.deliveries, webhook_id)
                _reject(guard.add(len(deliveries), page.next_page_token) or validate.check_page(
                    deliveries, webhook_id=webhook_id, start=chunk.start, end=chunk.end,
                    page_size=self.settings.page_size))
                last = not page.next_page_token

                def save(conn: sqlite3.Connection) -> SaveResult:
                    # Checked against the archive and saved in one turn of the writer: no other page comes between.
                    # One lookup of the page's ids serves the check and the save.
                    existing = archived(conn, [d.id for d in deliveries])
                    _reject(validate.check_page(deliveries, webhook_id=webhook_id, start=chunk.start, end=chunk.end,
                                                page_size=self.settings.page_size, archived_under=existing.owners()))
                    # Inside the writer's open batch (one transaction): the page, its resume position and
                    # its coverage are committed together or not at all.
                    saved = save_deliveries(conn, deliveries, seen_at=self.clock.now(),
                                            secret_headers=self.settings.secret_headers, existing=existing)
                    if self.resumable:
                        _set_position(conn, webhook_id, None if last else _Position(chunk, page.next_page_token))
                    if last:
                        read_at = self.clock.now()
                        covered = Interval(max(chunk.start, retention_start(read_at)),
                                           min(chunk.end, read_at - SETTLE))
                        if covered.start < covered.end:
                            record_interval(conn, webhook_id, covered)
                    return saved

                def committed(saved: SaveResult, last: bool = last) -> None:
                    self.result.pages += 1
                    self.result.new += saved.new
                    self.result.updated += saved.updated
                    if last:
                        self.covered_until = max(self.covered_until, chunk.end)
                    self._report()  # on the writer's thread, so progress callbacks never run concurrently

                self.db.page(save, rows=len(deliveries), after_commit=committed)
        finally:
            pages.close()  # stop reading ahead; the reader thread closes the generator

    def _commit_while_waiting(self, pages: object) -> None:
        """When this thread owns the archive and the next page is not there yet, commit the pages saved so
        far once they are :data:`collectors.fanout.BATCH_AGE_S` old, instead of holding them while MoeGo answers."""
        due = self.db.due_in()
        if due is None or not isinstance(pages, Prefetched):
            return
        if not pages.wait(due):
            self.db.flush()  # waited until the batch was due, and MoeGo has not answered yet

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Stopped()
        end = self.client.pass_deadline
        if end is not None and time.monotonic() >= end:
            raise _OutOfBudget()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(SyncProgress(self.result.webhook_id, self.window, self.covered_until, self.result.pages,
                                       self.result.new, self.result.updated))


def _reject(problem: str | None) -> None:
    """Raise for a page :mod:`collectors.validate` refused (nothing of it is saved)."""
    if problem:
        raise MalformedResponse(f"MoeGo's page breaks the contract ({problem}): nothing of this page was saved; "
                                "try again, and report it to MoeGo if it persists")


def _checked(deliveries: list[WebhookDelivery], webhook_id: str) -> list[WebhookDelivery]:
    """The page's entries ready to save: a missing webhook id is filled in; a missing time is malformed."""
    out = []
    for delivery in deliveries:
        if delivery.delivered_at is None:
            raise MalformedResponse(
                f"MoeGo listed delivery {delivery.id} without deliveredAt: nothing of this page was saved; "
                "try again, and report it to MoeGo if it persists"
            )
        if not delivery.webhook_id:
            delivery = dataclasses.replace(delivery, webhook_id=webhook_id)
        out.append(delivery)
    return out


def sync_window(settings: Settings, conn: sqlite3.Connection | None, client: MoeGoClient, webhook_id: str, *,
          clock: Clock, since: datetime | None, stop: threading.Event | None,
          progress: ProgressCallback | None, chunk: timedelta, label: str = "",
          edge_only: bool = False, overlap: timedelta | None = None, db: ArchiveAccess | None = None,
          read_ahead: int = 2) -> SyncResult:
    """Sync one webhook (see the module docstring); MoeGo failures end up in the result, not raised.

    ``edge_only`` reads nothing but the short first chunk at the retention edge, if the window
    starts there and no interrupted sync is pending (see :func:`collectors.collect.collect`).
    ``overlap`` is how far before the watermark to start (default ``settings.overlap``; callers pass
    :func:`collectors.overlap.reread_span` of the webhook's retry policy). ``db`` replaces ``conn``
    when the sync runs on a worker thread: every use of the archive goes through it (the pass's one
    writer, :class:`collectors.fanout.ArchiveWriter`), and so does ``progress``; with ``conn`` the sync
    makes a writer of its own and commits its last batch before returning (or raising). ``read_ahead``
    is how many pages are fetched ahead of the one being saved.
    """
    if db is None:
        if conn is None:
            raise ValueError("sync_window needs conn or db")
        own = ArchiveWriter(conn)  # this thread's: its batch is committed before this returns, whatever happens
        try:
            with few_collections():
                return sync_window(settings, None, client, webhook_id, clock=clock, since=since, stop=stop,
                                   progress=progress, chunk=chunk, label=label, edge_only=edge_only, overlap=overlap,
                                   db=own, read_ahead=read_ahead)
        finally:
            own.close()
    now = clock.start
    result = SyncResult(webhook_id=webhook_id, label=label, now=now)
    resumable = since is None
    db(lambda c: _ensure_state(c, webhook_id))
    edge = retention_start(now)
    sync = _Sync(settings, db, client, clock, result, resumable, stop, progress,
                 window=Interval(now, now), covered_until=now, read_ahead=read_ahead)
    try:
        if resumable:
            position = db(lambda c: _saved_position(c, webhook_id))
            if position is not None and edge_only:
                return result  # the pending chunk is finished first, by the full sync
            if position is not None:
                _resume(sync, position)
            reread = settings.overlap if overlap is None else overlap
            start = max(edge, watermark(db(lambda c: load_intervals(c, webhook_id)), edge) - reread)
        else:
            start = max(edge, since.astimezone(timezone.utc))  # type: ignore[union-attr]
        chunks = plan_chunks(start, now, length=chunk, edge=edge)
        if edge_only:
            at_edge = bool(chunks) and chunks[0].start < edge + EDGE_CHUNK and chunks[0].end - chunks[0].start <= EDGE_CHUNK
            chunks = chunks[:1] if at_edge else []
        if result.resumed:
            sync.window = Interval(min(start, sync.window.start), now)
        else:
            sync.window, sync.covered_until = Interval(start, now), start
        result.window = sync.window
        for part in chunks:
            sync.read_chunk(part)
    except _OutOfBudget:
        result.outcome = "interrupted"
        result.error = BUDGET_USED
    except _Stopped:
        result.outcome = "interrupted"
    except PassBudgetExhausted as exc:
        result.outcome = "interrupted"
        result.error = one_line(str(exc))
    except MoeGoError as exc:
        result.outcome = "failed"
        result.error = scrubbed(settings, str(exc))
        error, error_at = result.error, clock.now()
        db(lambda c: _record_outcome(c, webhook_id, error=error, error_at=error_at))
    else:
        if resumable and not edge_only:
            db(lambda c: _record_outcome(c, webhook_id, success_at=now))
    result.covered = db(lambda c: load_intervals(c, webhook_id))
    return result


#: Why a sync or pass stopped when its pass's time budget ran out.
BUDGET_USED = ("the collect pass used up its time budget (--budget, MOEGO_PASS_BUDGET): "
               "the next pass resumes where this one stopped")


def scrubbed(settings: Settings, text: str) -> str:
    """``text`` on one line, without the API key in any form: what may be stored or printed."""
    return one_line(scrub_secrets(text, (settings.api_key,)))


def archived_policy(conn: sqlite3.Connection, webhook_id: str) -> RetryPolicy | None:
    """The retry policy the archive holds for a webhook (as MoeGo last listed it), or ``None``."""
    row = conn.execute("SELECT retry_policy FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
    if not row or not row[0]:
        return None
    try:
        return RetryPolicy.from_json(json.loads(row[0]))
    except (ValueError, MalformedMessage, RecursionError):
        return None


def _resume(sync: _Sync, position: _Position) -> None:
    """Finish the chunk an earlier sync was reading, from its saved page token when that is safe."""
    chunk = position.chunk
    if chunk.start < retention_start(sync.clock.now()) + RESUME_MARGIN or chunk.end > sync.clock.start:
        # Entries at the start may be deleted while we page (or the chunk is not ours): re-plan instead.
        def clear(conn: sqlite3.Connection) -> None:
            with archive.transaction(conn):
                _set_position(conn, sync.result.webhook_id, None)
        sync.db(clear)
        return
    sync.result.resumed = True
    sync.window = Interval(chunk.start, sync.clock.start)
    sync.covered_until = chunk.start
    try:
        sync.read_chunk(chunk, position.page_token)
    except InvalidArgument:
        # MoeGo no longer accepts the token (expired, or from another version): read the chunk again.
        sync.read_chunk(chunk)


# -- public entry points ----------------------------------------------------------------------------


def sync_webhook(
    settings: Settings,
    conn: sqlite3.Connection,
    webhook_id: str,
    *,
    client: MoeGoClient | None = None,
    since: datetime | None = None,
    trigger: str = "redeliver",
    now: datetime | None = None,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    chunk: timedelta = DEFAULT_CHUNK,
) -> SyncResult:
    """Sync one webhook's deliveries into ``conn`` and record the run in ``collector_runs`` (``trigger``).

    Without ``since``: from the watermark, resuming an interrupted sync (what :func:`collectors.collect.collect` does
    for each webhook). With ``since`` (aware datetime): only ``[since, now)``, e.g. right after a
    redelivery; its coverage is recorded, but it neither uses nor moves the resume position nor
    ``last_success_at``, so it is safe beside a running collector. ``now`` defaults to the wall
    clock (UTC). MoeGo failures do not raise: the result's ``outcome`` is ``failed`` and ``error``
    is one line. ``client`` defaults to one made from ``settings`` (and closed here); without
    ``client`` and without an API key it raises :class:`collectors.config.ConfigError` before
    recording anything. Archive failures raise after the run is recorded as failed.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be an aware datetime")
    if client is None:
        settings.require_api_key()
    clock = Clock(now)
    archive.ensure_db_shape(conn)
    known = conn.execute("SELECT endpoint_url FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
    run_id = start_run(conn, trigger, clock.start)
    measured: timedelta | None = None
    secrets = (settings.api_key,)
    try:
        with client_for(settings, client, stop=stop) as moego:
            measured = skew.measure(moego.server_time, clock.at)  # a recent answer (the redelivery) tells MoeGo's time
            moego_clock = Clock(clock.now() + skew.correction(measured))
            result = sync_window(settings, conn, moego, webhook_id, clock=moego_clock, since=since, stop=stop,
                                 progress=progress, chunk=chunk, label=endpoint_label(known[0]) if known else "",
                                 overlap=reread_span(archived_policy(conn, webhook_id), settings.overlap))
    except BaseException as exc:
        finish_run(conn, run_id, outcome="failed", finished_at=clock.now(), webhooks=1, pages=0, new_rows=0,
                   updated_rows=0, error=describe_crash(exc), clock_skew=measured, secrets=secrets)
        raise
    finish_run(conn, run_id, outcome=result.outcome, finished_at=clock.now(), webhooks=1, pages=result.pages,
               new_rows=result.new, updated_rows=result.updated, error=result.error, clock_skew=measured,
               secrets=secrets)
    return result


class client_for:
    """``client`` as given (left open), or one made from ``settings`` and closed on exit.

    A client made here waits out its retry backoff on ``stop``, so Ctrl-C or SIGTERM is not held
    up by a long ``Retry-After`` (the stop then takes effect at the next page boundary).
    """

    def __init__(self, settings: Settings, client: MoeGoClient | None, *, stop: threading.Event | None = None) -> None:
        self._settings = settings
        self._given = client
        self._stop = stop
        self._made: MoeGoClient | None = None

    def __enter__(self) -> MoeGoClient:
        if self._given is not None:
            return self._given
        self._made = make_client(self._settings)
        if self._stop is not None:
            self._made.sleep = self._stop.wait
        return self._made

    def __exit__(self, *exc: object) -> None:
        if self._made is not None:
            self._made.close()


def describe_crash(exc: BaseException) -> str:
    """One line for an unexpected failure (never includes settings, so never the key)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C) outside a page boundary; the next run resumes from the last committed page"
    return one_line(f"{type(exc).__name__}: {exc}")


def endpoint_label(endpoint_url: str) -> str:
    """A short name for a webhook: its endpoint's host and path, middle-elided past 48 characters."""
    parsed = urlparse(endpoint_url)
    text = (parsed.netloc + parsed.path).rstrip("/") or endpoint_url
    return text if len(text) <= 48 else text[:22] + "…" + text[-25:]


def _short_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
