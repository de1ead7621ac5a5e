"""Several webhooks synced at once, with ONE writer: the thread that owns the archive connection; pages
committed a few at a time.

:class:`ArchiveWriter` is the archive connection's only user. Worker threads (one per webhook being
synced, at most ``settings.concurrency`` of them, :func:`run_workers`) fetch, parse and check their
pages, then hand each page's save to the writer (``writer.page(fn, rows=...)`` runs ``fn(conn)`` on the
owner's thread and returns its result, or raises its exception in the worker; ``writer(fn)`` does the
same for any other work). A page, its resume position and its coverage are still written together,
each webhook's pages in its own order, so a kill at any moment loses nothing and doubles nothing,
exactly as with one webhook at a time.

Called on the owner's thread, ``writer.page(fn)`` and ``writer(fn)`` simply run ``fn(conn)``: with a
concurrency of 1 the pass runs as before, on one thread.

**Batched commits** (:class:`PageBatch`). Each ``COMMIT`` writes every page of the archive the
transaction changed to the WAL (and a checkpoint writes it again into the file): the random-key indexes
(the delivery id, ``deliveries_by_event``) and the full-text index touch a few hundred pages for a
500-entry page, more as the archive grows. So the writer keeps ONE write transaction open over several
pages and commits it when it holds :data:`BATCH_ROWS` entries or its first page was saved
:data:`BATCH_AGE_S` ago, whichever comes first, and before any other work (``writer(fn)``: a sync's
bookkeeping, its end, a stop), when the workers are done, and when the writer closes. What that keeps:

- Each page is saved with its resume position in the same transaction, so whatever a kill leaves is
  a prefix of each webhook's pages with the position matching it: the pages of the open batch are
  read again by the next pass (nothing lost), and upserts on the delivery id double nothing.
- A page's ``after_commit`` (the sync's counters and progress) runs only once its batch is committed.
- A page whose save fails before it wrote anything (a contract check) leaves the batch as it was. One
  that fails after writing rolls the whole batch back (its positions too); from then on every page
  handed to this writer fails with :class:`BatchLost`, so no sync goes on past pages that were dropped.
- Rows are visible to readers (the dashboard's live tail) at most :data:`BATCH_AGE_S` after their
  page was saved, plus the time one page takes to save: the owner commits a batch that old on its
  next page, while waiting for work (:meth:`ArchiveWriter.serve`), or when the sync it runs waits
  for MoeGo longer than :meth:`ArchiveWriter.due_in` says.
"""

from __future__ import annotations

import gc
import queue
import sqlite3
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from . import archive
from .archive import schema

__all__ = ["ArchiveWriter", "BATCH_AGE_S", "BATCH_CACHE_KIB", "BATCH_ROWS", "BatchLost", "PageBatch", "WriterClosed",
           "few_collections", "run_workers"]

T = TypeVar("T")
R = TypeVar("R")

#: A batch of pages is committed once it holds this many entries (40 pages of 500)...
BATCH_ROWS = 20_000
#: ... or once its first page was saved this many seconds ago, whichever comes first.
BATCH_AGE_S = 3.0
#: The page cache of a batching connection (KiB; SQLite's default is 2 MB). The delivery id and the event id
#: are random keys, so every entry lands on its own leaf page of two indexes (~125 MB together at MoeGo's
#: full volume): with a small cache each insert and lookup reads those pages back from the OS (a
#: backfill read ~50 KB per entry). Allocated only as used; a batch's changed pages also stay in memory
#: until its commit instead of spilling into the WAL halfway.
BATCH_CACHE_KIB = 256 * 1024
#: Python's cyclic garbage collector while a pass writes (:func:`few_collections`): a page's thousands of
#: short-lived dicts and dataclasses, freed by reference counting, no longer start a collection every 700.
PASS_GC_THRESHOLD = (50_000, 20, 20)
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, ...] = ()


@contextmanager
def few_collections() -> Iterator[None]:
    """While the block runs: the objects alive at its start are left out of garbage collection
    (``gc.freeze``) and collections run less often (:data:`PASS_GC_THRESHOLD`). Re-entrant and thread-safe;
    the settings before it are put back when the outermost block ends. Nothing is leaked: cycles are still
    collected, only less often, and frozen objects are unfrozen at the end."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*PASS_GC_THRESHOLD)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


class WriterClosed(Exception):
    """The writer stopped (the pass ended or crashed) before it could run this work."""


class BatchLost(sqlite3.DatabaseError):
    """A batch of pages was rolled back after a failed write, so no later page may be saved by this writer
    (an archive error: the CLI reports it on one line like any other)."""


class PageBatch:
    """Pages saved in one write transaction, committed together (see the module docstring).

    Used on one thread only (the connection's owner). ``max_rows`` / ``max_age_s`` are when a batch is
    committed; ``max_rows=1`` commits every page on its own (the behaviour before batching).
    """

    def __init__(self, conn: sqlite3.Connection, *, max_rows: int = BATCH_ROWS, max_age_s: float = BATCH_AGE_S,
                 cache_kib: int | None = BATCH_CACHE_KIB) -> None:
        if max_rows < 1 or max_age_s < 0:
            raise ValueError("max_rows must be at least 1 and max_age_s not negative")
        self.conn = conn
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._txn: AbstractContextManager[sqlite3.Connection] | None = None
        self._opened = 0.0
        self._rows = 0
        self._pages = 0
        self._after: list[Callable[[], None]] = []
        self._lost: str | None = None
        self.commits = 0  # batches committed (for tests and benchmarks)
        if cache_kib is not None and max_rows > 1:
            conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            if schema.WAL_LIMIT_BYTES is not None:
                # No checkpoint at every commit (SQLite's default: once the WAL holds 1,000 pages, i.e. after each
                # batch): the WAL grows to its bound, then the commit that passes it checkpoints it (schema's
                # _bound_wal), so a page the random-key indexes change in several batches is written back once.
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA wal_autocheckpoint={schema.WAL_LIMIT_BYTES // page_size}")

    @property
    def pending(self) -> int:
        """Pages saved but not committed yet."""
        return self._pages

    def save(self, fn: Callable[[sqlite3.Connection], T], *, rows: int,
             after_commit: Callable[[T], None] | None = None) -> T:
        """``fn(conn)`` inside the open batch (opened if none is); ``after_commit(result)`` once it is committed.

        ``rows`` is how many entries the page holds. The batch is committed here when it is full or old enough.
        """
        if self._lost is not None:
            raise BatchLost(self._lost)
        if self._txn is None:
            txn = archive.transaction(self.conn)
            txn.__enter__()  # BEGIN IMMEDIATE
            self._txn, self._opened = txn, time.monotonic()
        before = self.conn.total_changes
        try:
            result = fn(self.conn)
        except BaseException as exc:
            if self.conn.total_changes != before or not self.conn.in_transaction:
                self._drop(exc)  # the page wrote part of itself: nothing of the batch may be committed
            elif self._pages == 0:
                self._end(exc)  # nothing saved yet: close the empty transaction
            raise
        self._rows += rows
        self._pages += 1
        if after_commit is not None:
            self._after.append(lambda: after_commit(result))
        if self._rows >= self.max_rows or self.due_in() == 0.0:
            self.flush()
        return result

    def due_in(self) -> float | None:
        """Seconds until the open batch is old enough to commit (0.0: now); ``None`` when none is open."""
        if self._txn is None or self._pages == 0:
            return None
        return max(0.0, self._opened + self.max_age_s - time.monotonic())

    def flush(self) -> None:
        """Commit the open batch, if any, then run its pages' ``after_commit``; a failed commit loses the batch."""
        if self._txn is None:
            return
        after, self._after = self._after, []
        try:
            self._end(None)
        except BaseException as exc:
            self._lost = _lost_line(exc)
            raise
        self.commits += 1
        for callback in after:
            callback()

    def close(self) -> None:
        """Commit what is complete; if that fails, roll back and say nothing (the caller is already ending)."""
        try:
            self.flush()
        except BaseException:  # noqa: BLE001 - the error that ended the caller is the one reported
            pass

    def _end(self, exc: BaseException | None) -> None:
        txn, self._txn = self._txn, None
        self._rows = self._pages = 0
        if txn is not None:
            if exc is None:
                txn.__exit__(None, None, None)  # COMMIT, then the WAL kept in bounds
            else:
                txn.__exit__(type(exc), exc, exc.__traceback__)  # ROLLBACK

    def _drop(self, exc: BaseException) -> None:
        self._after = []
        lost = self._pages
        self._end(exc)
        if lost:
            self._lost = _lost_line(exc)


def _lost_line(exc: BaseException) -> str:
    return (f"the archive could not write a batch of pages ({type(exc).__name__}: {exc}); nothing of it was "
            "committed, and the next pass reads those pages again")


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class ArchiveWriter:
    """Runs work on the archive connection, always on the thread that created it, committing pages in
    batches (see the module docstring). ``batch`` is the :class:`PageBatch` it fills."""

    def __init__(self, conn: sqlite3.Connection, *, batch: PageBatch | None = None) -> None:
        self.conn = conn
        self.batch = batch if batch is not None else PageBatch(conn)
        self._owner = threading.get_ident()
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` run by the writer once every page saved so far is committed; its result, or its exception."""
        def run(conn: sqlite3.Connection) -> T:
            self.batch.flush()
            return fn(conn)
        return self._run(run)

    def page(self, fn: Callable[[sqlite3.Connection], T], *, rows: int,
             after_commit: Callable[[T], None] | None = None) -> T:
        """``fn(conn)`` saving one page (``rows`` entries) in the open batch (:meth:`PageBatch.save`)."""
        return self._run(lambda conn: self.batch.save(fn, rows=rows, after_commit=after_commit))

    def due_in(self) -> float | None:
        """On the owner's thread: seconds until the open batch should be committed (``None``: nothing
        pending). Elsewhere always ``None``: the owner's :meth:`serve` keeps time then."""
        return self.batch.due_in() if threading.get_ident() == self._owner else None

    def flush(self) -> None:
        """Commit the open batch now (pages saved so far become visible)."""
        self._run(lambda conn: self.batch.flush())

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if threading.get_ident() == self._owner:
            return fn(self.conn)
        job = _Job(fn)
        with self._lock:
            if self._closed:
                raise WriterClosed("the archive writer has stopped")
            self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def serve(self, busy: Callable[[], bool]) -> None:
        """Run the workers' jobs, in the order they arrive, until ``busy()`` is false and none is waiting;
        a batch is committed when it is due while waiting, and at the end."""
        if threading.get_ident() != self._owner:
            raise RuntimeError("only the thread that owns the connection serves it")
        while True:
            due = self.batch.due_in()
            try:
                job = self._jobs.get(timeout=0.05 if due is None else min(0.05, max(due, 0.001)))
            except queue.Empty:
                if self.batch.due_in() == 0.0:
                    self.batch.flush()
                if not busy():
                    self.batch.flush()
                    return
                continue
            try:
                job.result = job.fn(self.conn)
            except BaseException as exc:  # handed to the worker that asked; a Ctrl-C here is also re-raised
                job.error = exc
                if not isinstance(exc, Exception):
                    job.done.set()
                    raise
            job.done.set()

    def close(self) -> None:
        """Commit what is complete, then refuse further work; work still queued fails with :class:`WriterClosed`."""
        if threading.get_ident() == self._owner:
            self.batch.close()
        with self._lock:
            self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            job.error = WriterClosed("the archive writer has stopped")
            job.done.set()


@dataclass
class _Outcome(Generic[R]):
    result: R | None = None
    error: BaseException | None = None


def run_workers(conn: sqlite3.Connection, items: Iterable[T], work: Callable[[ArchiveWriter, T], R], *, workers: int,
                should_start: Callable[[], bool] = lambda: True) -> list[tuple[T, R]]:
    """``work(writer, item)`` for each item on at most ``workers`` threads, while this thread is the writer of ``conn``.

    Items are started in order, each as soon as a thread is free and ``should_start()`` still says
    so. Returns ``(item, result)`` for every item that ran, in the order of ``items``. If a work
    raised (not a MoeGo failure: those are results), the others are waited for and the first such
    error is raised here. The writer is closed on the way out, so no worker can wait on it forever.
    """
    pending = list(items)
    writer = ArchiveWriter(conn)
    outcomes: dict[int, _Outcome[R]] = {}
    lock = threading.Lock()
    cursor = [0]

    def next_index() -> int | None:
        with lock:
            if cursor[0] >= len(pending) or not should_start():
                return None
            cursor[0] += 1
            return cursor[0] - 1

    def worker() -> None:
        while (index := next_index()) is not None:
            outcome: _Outcome[R] = _Outcome()
            try:
                outcome.result = work(writer, pending[index])
            except BaseException as exc:  # noqa: BLE001 - re-raised on the writer's thread
                outcome.error = exc
            with lock:
                outcomes[index] = outcome

    threads = [threading.Thread(target=worker, name=f"moego-sync-{n + 1}", daemon=True)
               for n in range(max(1, min(workers, len(pending))))]
    with few_collections():
        for thread in threads:
            thread.start()
        try:
            writer.serve(lambda: any(t.is_alive() for t in threads))
        finally:
            writer.close()
            for thread in threads:
                thread.join()
    ordered = sorted(outcomes.items())
    for _, outcome in ordered:
        if outcome.error is not None and not isinstance(outcome.error, WriterClosed):
            raise outcome.error
    for _, outcome in ordered:
        if outcome.error is not None:
            raise outcome.error
    return [(pending[i], o.result) for i, o in ordered]  # type: ignore[misc]
