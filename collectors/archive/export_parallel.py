"""The export on several cores: the window cut into time slices, built by worker processes, written in order.

Building CSV lines is Python work (one core at a time per process), so a large export is split by time:
:func:`plan` cuts the window into consecutive slices of about :data:`SLICE_ROWS` rows each, reading the
hourly rollup (never the rows). Each of ``workers`` processes (forked: they start at once, with nothing to
import) opens the archive read-only and builds every ``workers``-th slice, oldest first, with
:class:`collectors.archive.csv_lines.Lines`, sending pieces of at most about :data:`PIECE_BYTES` through a
bounded queue of its own. :func:`pieces` takes slice 0 from worker 0, slice 1 from worker 1, and so on:
the bytes come out in the export's order (by ``delivered_at``, then ``id``: slices split on time, so
their concatenation is the order of the whole), while memory stays a few pieces per worker.

Each slice is its own read, so a row the collector adds during the export may or may not be in it (as
with an export started a moment later); a row is never written twice. A worker's error is raised again
by :func:`pieces` (a worker that disappears without a word raises :class:`ExportWorkerError`); leaving
:func:`pieces` early stops the workers.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .csv_lines import BATCH, Lines
from .filters import Filters, Window
from .names import webhook_names
from .schema import connect
from .where import deliveries_where, hourly_where, rollup_can_answer

__all__ = ["SLICE_ROWS", "PIECE_BYTES", "ExportWorkerError", "default_workers", "plan", "database_file", "pieces"]

#: Rows in a slice, about (whole hours of the rollup are grouped until they reach it).
SLICE_ROWS = 10_000
#: Bytes in a piece a worker sends, about; a worker's queue holds at most _QUEUED pieces.
PIECE_BYTES = 1 << 20
_QUEUED = 8
#: Below this many rows an export is built in the calling process: workers would cost more than they save.
PARALLEL_FROM = 2 * SLICE_ROWS
#: How long the reader waits on a worker before checking that it is still alive, in seconds.
_POLL_S = 1.0


class ExportWorkerError(RuntimeError):
    """A worker process building part of the export stopped without finishing (killed, out of memory)."""


@dataclass(frozen=True)
class _Failed:
    """A worker's exception, sent to the reader to be raised there."""

    error: BaseException


def default_workers() -> int:
    """Worker processes for a large export: two when this machine has two cores or more, else none (1)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def plan(conn: sqlite3.Connection, filters: Filters, window: Window) -> list[str] | None:
    """Slice bounds ``[b0, b1, ..., bn]`` (archive timestamps or hour prefixes; slice i is ``[bi, bi+1)``)
    covering the window with about :data:`SLICE_ROWS` rows each, or ``None`` when the export is better built
    in one process: filters the hourly rollup cannot count (a search, exact statuses), or fewer than
    :data:`PARALLEL_FROM` rows. The bounds always cover the whole window, whatever the rollup says."""
    if not rollup_can_answer(filters):
        return None
    since, until = window.since_text, window.until_text
    where = hourly_where(filters, since[:13], until[:13] + ";")  # the edge hours whole: a count to cut by
    counts = conn.execute(f"SELECT hour, SUM(deliveries) FROM delivery_hourly WHERE {where.sql} GROUP BY hour "
                          "ORDER BY hour", where.params).fetchall()
    if sum(n for _, n in counts) < PARALLEL_FROM:
        return None
    bounds, held = [since], 0
    for hour, n in counts:
        if held >= SLICE_ROWS and since < hour < until:
            bounds.append(hour)
            held = 0
        held += n
    bounds.append(until)
    return bounds if len(bounds) > 2 else None


def database_file(conn: sqlite3.Connection) -> str | None:
    """The file of ``conn``'s main database, or ``None`` (in memory, temporary)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or None
    return None


def _work(path: str, filters: Filters, bounds: Sequence[str], mine: range, secret_headers: Sequence[str],
          out: multiprocessing.queues.Queue) -> None:
    """A worker: build the slices ``mine``, in order, each as pieces ``(rows, bytes)`` then ``None``."""
    try:
        conn = connect(path, readonly=True)
        lines = Lines(conn, secret_headers, webhook_names(conn))
        select, params = lines.select()
        for k in mine:
            where = deliveries_where(filters, bounds[k], bounds[k + 1], time_ordered=True)
            cursor = conn.execute(f"{select} WHERE {where.sql} ORDER BY delivered_at, id", params + where.params)
            held: list[bytes] = []
            rows = size = 0
            while batch := cursor.fetchmany(BATCH):
                held.append(lines.lines(batch))
                rows += len(batch)
                size += len(held[-1])
                if size >= PIECE_BYTES:
                    out.put((rows, b"".join(held)))
                    held, rows, size = [], 0, 0
            if held:
                out.put((rows, b"".join(held)))
            out.put(None)
        conn.close()
    except BaseException as exc:  # sent to the reader, raised there
        try:
            out.put(_Failed(exc))
        except Exception:
            out.put(_Failed(ExportWorkerError(f"{type(exc).__name__}: {exc}")))


def pieces(conn: sqlite3.Connection, filters: Filters, bounds: Sequence[str], *, workers: int,
           secret_headers: Sequence[str] = ()) -> Iterator[tuple[int, bytes]]:
    """Start ``workers`` processes on the slices ``bounds`` (:func:`plan`) of the file ``conn`` reads; returns the
    export as ``(rows, CSV bytes)`` pieces in order. The processes start before this returns (call it before
    starting threads of your own: they are forked). Raises ``ValueError`` for an archive in memory."""
    path = database_file(conn)
    if path is None:
        raise ValueError("a parallel export needs the archive's file")
    context = multiprocessing.get_context("fork")
    slices = len(bounds) - 1
    workers = max(1, min(workers, slices))
    queues = [context.Queue(maxsize=_QUEUED) for _ in range(workers)]
    processes = [context.Process(target=_work, name=f"moego-export-{w}", daemon=True,
                                 args=(path, filters, tuple(bounds), range(w, slices, workers), tuple(secret_headers),
                                       queues[w]))
                 for w in range(workers)]
    for process in processes:
        process.start()
    return _read(queues, processes, slices)


def _read(queues: list, processes: list, slices: int) -> Iterator[tuple[int, bytes]]:
    """Slice after slice, each from its worker's queue; the workers stopped at the end, however it comes."""
    workers = len(processes)
    try:
        for k in range(slices):
            source, process = queues[k % workers], processes[k % workers]
            while (item := _next(source, process)) is not None:
                if isinstance(item, _Failed):
                    raise item.error
                yield item  # type: ignore[misc]
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for source in queues:
            source.close()
            source.cancel_join_thread()


def _next(source: multiprocessing.queues.Queue, process: multiprocessing.process.BaseProcess) -> object:
    """The next item from a worker's queue; :class:`ExportWorkerError` once the worker is gone with nothing left."""
    while True:
        try:
            return source.get(timeout=_POLL_S)
        except queue.Empty:
            if not process.is_alive():
                try:
                    return source.get(timeout=_POLL_S)
                except queue.Empty:
                    raise ExportWorkerError(
                        f"the export's worker process stopped (exit status {process.exitcode}) before finishing"
                    ) from None
