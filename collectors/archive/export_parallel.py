"""The export on several cores: the window cut into time slices, built by worker processes, written in order.

Building CSV lines is Python work (one core at a time per process), so a large export is split by time:
:func:`plan` cuts the window into consecutive slices of about :data:`SLICE_ROWS` rows each, reading the
hourly rollup (never the rows). Each of ``workers`` processes (forked: they start at once, with nothing to
import) opens the archive read-only and builds every ``workers``-th slice, oldest first, with
:class:`collectors.archive.csv_lines.Lines`, sending pieces of about :data:`PIECE_BYTES` down a pipe of its
own (widened to hold a whole piece; a thread writes them; at most :data:`_QUEUED` wait) that the reader reads
straight into one buffer per piece. :func:`pieces` takes slice 0 from worker 0, slice 1
from worker 1, and so on:
the bytes come out in the export's order (by ``delivered_at``, then ``id``: slices split on time, so
their concatenation is the order of the whole), while memory stays a few pieces per worker.

Each slice is its own read, so a row the collector adds during the export may or may not be in it (as
with an export started a moment later); a row is never written twice. A worker's error is raised again
by :func:`pieces`; a worker that disappears (killed, out of memory) closes its pipe, and :func:`pieces` raises
:class:`ExportWorkerError` at once; leaving :func:`pieces` early stops the workers.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import pickle
import queue
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Sequence

from .csv_lines import BATCH, Lines
from .filters import Filters, Window
from .names import webhook_names
from .schema import connect
from .where import deliveries_where, hourly_where, rollup_can_answer

__all__ = ["SLICE_ROWS", "PIECE_BYTES", "ExportWorkerError", "default_workers", "plan", "database_file", "pieces"]

#: Rows in a slice, about (whole hours of the rollup are grouped until they reach it).
SLICE_ROWS = 10_000
#: Bytes in a piece a worker sends, about; at most _QUEUED pieces wait in a worker for the reader.
PIECE_BYTES = 1 << 20
_QUEUED = 8
#: A message's header: its code (rows in the piece that follows, 0 or more, or one of these) and the data's length.
_HEADER = struct.Struct("<qq")
#: A pipe's capacity asked for (Linux's default most: /proc/sys/fs/pipe-max-size): a piece and then some.
_PIPE_BYTES = 1 << 20
_END, _FAILED = -1, -2
#: Below this many rows an export is built in the calling process: workers would cost more than they save.
PARALLEL_FROM = 2 * SLICE_ROWS
#: How long the reader waits for a worker that has gone to be reaped, in seconds.
_POLL_S = 1.0


class ExportWorkerError(RuntimeError):
    """A worker process building part of the export stopped without finishing (killed, out of memory)."""


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
          out: int, readers: Sequence[int]) -> None:
    """A worker: build the slices ``mine``, in order, and send each as pieces then an end mark (:func:`_sender`)
    down the pipe ``out``. ``readers``: the reading ends of the pipes, inherited, closed here (so that once the
    reader has gone, a write fails instead of waiting)."""
    for fd in readers:
        os.close(fd)
    send = _sender(out)
    try:
        conn = connect(path, readonly=True)
        lines = Lines(conn, secret_headers, webhook_names(conn))
        select, params = lines.select()
        for k in mine:
            where = deliveries_where(filters, bounds[k], bounds[k + 1], time_ordered=True)
            cursor = conn.execute(f"{select} WHERE {where.sql} ORDER BY delivered_key, id", params + where.params)
            held: list[bytes] = []
            rows = size = 0
            while batch := cursor.fetchmany(BATCH):
                held.append(lines.lines(batch))
                rows += len(batch)
                size += len(held[-1])
                if size >= PIECE_BYTES:
                    send(rows, held)
                    held, rows, size = [], 0, 0
            if held:
                send(rows, held)
            send(_END, ())
        conn.close()
    except BaseException as exc:  # sent to the reader, raised there
        try:
            reason = pickle.dumps(exc)
        except Exception:
            reason = pickle.dumps(ExportWorkerError(f"{type(exc).__name__}: {exc}"))
        send(_FAILED, (reason,))
    finally:
        send(None, ())


def _sender(out: int) -> Callable[[int | None, Sequence[bytes]], None]:
    """``send(code, chunks)``: queue a message for a thread that writes it to the pipe ``out`` (at most
    :data:`_QUEUED` waiting, so building goes on while the reader is busy with another worker); ``None`` ends
    the thread and waits for it. A message is its header (:data:`_HEADER`: the code, rows in the piece,
    :data:`_END` or :data:`_FAILED`, and the data's length), then the data: the chunks, written one after the
    other (never joined: one copy fewer)."""
    waiting: queue.Queue[tuple[int, Sequence[bytes]] | None] = queue.Queue(maxsize=_QUEUED)

    def run() -> None:
        try:
            while (item := waiting.get()) is not None:
                code, chunks = item
                _write_all(out, _HEADER.pack(code, sum(map(len, chunks))))
                for chunk in chunks:
                    _write_all(out, chunk)
        except OSError:  # the reader has gone (the export stopped): nothing to send to
            while waiting.get() is not None:
                pass
        finally:
            os.close(out)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def send(code: int | None, chunks: Sequence[bytes]) -> None:
        if code is None:
            waiting.put(None)
            thread.join()
        else:
            waiting.put((code, chunks))

    return send


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def pieces(conn: sqlite3.Connection, filters: Filters, bounds: Sequence[str], *, workers: int,
           secret_headers: Sequence[str] = ()) -> "_Pieces":
    """Start ``workers`` processes on the slices ``bounds`` (:func:`plan`) of the file ``conn`` reads; returns the
    export as ``(rows, CSV bytes)`` pieces in order. The processes start before this returns (call it before
    starting threads of your own: they are forked). Raises ``ValueError`` for an archive in memory."""
    path = database_file(conn)
    if path is None:
        raise ValueError("a parallel export needs the archive's file")
    context = multiprocessing.get_context("fork")
    slices = len(bounds) - 1
    workers = max(1, min(workers, slices))
    readers, processes = [], []
    try:
        for w in range(workers):
            reader, writer = os.pipe()
            readers.append(reader)
            _widen(reader)
            try:
                process = context.Process(target=_work, name=f"moego-export-{w}", daemon=True,
                                          args=(path, filters, tuple(bounds), range(w, slices, workers),
                                                tuple(secret_headers), writer, tuple(readers)))
                process.start()
            finally:
                os.close(writer)  # the worker's own: once it is gone, reading its pipe ends (EOF) instead of waiting
            processes.append(process)
    except BaseException:
        _stop(readers, processes)
        raise
    return _Pieces(readers, processes, slices)


class _Pieces:
    """The iterator :func:`pieces` returns: :func:`_read`'s, whose :meth:`close` stops the workers even when
    nothing was read yet (closing a generator that has not started runs none of its code)."""

    def __init__(self, readers: list[int], processes: list, slices: int) -> None:
        self._readers, self._processes = readers, processes
        self._pieces = _read(readers, processes, slices)

    def __iter__(self) -> Iterator[tuple[int, bytearray]]:
        return self

    def __next__(self) -> tuple[int, bytearray]:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()
        _stop(self._readers, self._processes)


def _widen(fd: int) -> None:
    """Make the pipe ``fd`` hold a whole piece (Linux; elsewhere, or when the system allows less, as it is):
    the worker writes a piece at once and the reader reads it in one call, instead of 64 KiB at a time."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    except OSError:
        pass


def _stop(readers: list[int], processes: list) -> None:
    """Close the pipes and end the workers still running (once: both lists are emptied)."""
    while readers:
        os.close(readers.pop())
    while processes:
        process = processes.pop()
        if process.is_alive():
            process.terminate()
        process.join()


def _read(readers: list[int], processes: list, slices: int) -> Iterator[tuple[int, bytearray]]:
    """Slice after slice, each from its worker's pipe; the workers stopped at the end, however it comes."""
    workers = len(processes)
    try:
        for k in range(slices):
            reader, process = readers[k % workers], processes[k % workers]
            while True:
                code, data = _receive(reader, process)
                if code == _END:
                    break
                if code == _FAILED:
                    raise pickle.loads(data)
                yield code, data
        for process in processes:
            process.join()
    finally:
        _stop(readers, processes)


def _receive(reader: int, process: multiprocessing.process.BaseProcess) -> tuple[int, bytearray]:
    """The next message from a worker's pipe (read straight into one buffer: no copies on the way);
    :class:`ExportWorkerError` when the worker is gone before it."""
    header = _read_exactly(reader, bytearray(_HEADER.size))
    if header is not None:
        code, size = _HEADER.unpack(header)
        data = _read_exactly(reader, bytearray(size)) if size else bytearray()
        if data is not None:
            return code, data
    process.join(timeout=_POLL_S)
    raise ExportWorkerError(f"the export's worker process stopped (exit status {process.exitcode}) before finishing")


def _read_exactly(fd: int, buffer: bytearray) -> bytearray | None:
    """``buffer`` filled from ``fd``, or ``None`` at the end of the pipe (or a read error) before it is full."""
    view, done = memoryview(buffer), 0
    try:
        while done < len(buffer):
            got = os.readv(fd, (view[done:],))
            if not got:
                return None
            done += got
    except OSError:
        return None
    finally:
        view.release()
    return buffer
