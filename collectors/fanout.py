"""Several webhooks synced at once, with ONE writer: the thread that owns the archive connection.

:class:`ArchiveWriter` is the archive connection's only user. Worker threads (one per webhook being
synced, at most ``settings.concurrency`` of them, :func:`run_workers`) fetch, parse and check their
pages, then hand each page's save to the writer (``writer(fn)`` runs ``fn(conn)`` on the owner's
thread and returns its result, or raises its exception in the worker). A page, its resume position
and its coverage are still one transaction, each webhook's pages are still committed in its own
order, so a kill at any moment loses nothing and doubles nothing, exactly as with one webhook at a time.

Called on the owner's thread, ``writer(fn)`` simply runs ``fn(conn)``: with a concurrency of 1 the
pass runs as before, on one thread.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar

__all__ = ["ArchiveWriter", "WriterClosed", "run_workers"]

T = TypeVar("T")
R = TypeVar("R")


class WriterClosed(Exception):
    """The writer stopped (the pass ended or crashed) before it could run this work."""


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class ArchiveWriter:
    """Runs work on the archive connection, always on the thread that created it (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._owner = threading.get_ident()
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` run by the writer; its result, or its exception raised here."""
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
        """Run the workers' jobs, in the order they arrive, until ``busy()`` is false and none is waiting."""
        if threading.get_ident() != self._owner:
            raise RuntimeError("only the thread that owns the connection serves it")
        while True:
            try:
                job = self._jobs.get(timeout=0.05)
            except queue.Empty:
                if not busy():
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
        """Refuse further work; work still queued fails with :class:`WriterClosed`."""
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
