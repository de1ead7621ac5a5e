"""The export on several cores: the window cut into time slices, built by worker processes, written in order.

Building CSV lines is Python work (one core at a time per process), so a large export is split by time:
:func:`plan` cuts the window into consecutive slices of about :data:`SLICE_ROWS` rows each, reading the
hourly rollup (never the rows). Each of ``workers`` processes (forked: they start at once, with nothing to
import) opens the archive read-only and builds every ``workers``-th slice, oldest first, with
:class:`collectors.archive.csv_lines.Lines`, sending pieces of about :data:`PIECE_BYTES` down a pipe of its
own (a thread writes them; at most :data:`_QUEUED` wait). :func:`pieces` takes slice 0 from worker 0, slice 1
from worker 1, and so on:
the bytes come out in the export's order (by ``delivered_at``, then ``id``: slices split on time, so
their concatenation is the order of the whole), while memory stays a few pieces per worker.

Each slice is its own read, so a row the collector adds during the export may or may not be in it (as
with an export started a moment later); a row is never written twice. A worker's error is raised again
by :func:`pieces`; a worker that disappears (killed, out of memory) closes its pipe, and :func:`pieces` raises
:class:`ExportWorkerError` at once; leaving :func:`pieces` early stops the workers.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection

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
#: A message's code: rows in the piece that follows (0 or more), or one of these.
_CODE = struct.Struct("<q")
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
          out: Connection) -> None:
    """A worker: build the slices ``mine``, in order, and send each as pieces then an end mark (:func:`_sender`)."""
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
                    send(rows, b"".join(held))
                    held, rows, size = [], 0, 0
            if held:
                send(rows, b"".join(held))
            send(_END, b"")
        conn.close()
    except BaseException as exc:  # sent to the reader, raised there
        try:
            reason = pickle.dumps(exc)
        except Exception:
            reason = pickle.dumps(ExportWorkerError(f"{type(exc).__name__}: {exc}"))
        send(_FAILED, reason)
    finally:
        send(None, b"")


def _sender(out: Connection) -> Callable[[int | None, bytes], None]:
    """``send(code, data)``: queue a message for a thread that writes it to ``out`` (at most :data:`_QUEUED`
    waiting, so building goes on while the reader is busy with another worker); ``None`` ends the thread
    and waits for it. A message is the code (rows in the piece, :data:`_END` or :data:`_FAILED`), 8 bytes,
    then, unless it is an end mark, the data."""
    waiting: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=_QUEUED)

    def run() -> None:
        try:
            while (item := waiting.get()) is not None:
                code, data = item
                out.send_bytes(_CODE.pack(code))
                if code != _END:
                    out.send_bytes(data)
        except OSError:  # the reader has gone (the export stopped): nothing to send to
            while waiting.get() is not None:
                pass
        finally:
            out.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def send(code: int | None, data: bytes) -> None:
        if code is None:
            waiting.put(None)
            thread.join()
        else:
            waiting.put((code, data))

    return send


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
    readers, processes = [], []
    for w in range(workers):
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_work, name=f"moego-export-{w}", daemon=True,
                                  args=(path, filters, tuple(bounds), range(w, slices, workers), tuple(secret_headers),
                                        writer))
        process.start()
        writer.close()  # the worker's own: once it is gone, reading its pipe ends (EOF) instead of waiting
        readers.append(reader)
        processes.append(process)
    return _read(readers, processes, slices)


def _read(readers: list[Connection], processes: list, slices: int) -> Iterator[tuple[int, bytes]]:
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
        for reader in readers:
            reader.close()
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _receive(reader: Connection, process: multiprocessing.process.BaseProcess) -> tuple[int, bytes]:
    """The next message from a worker's pipe; :class:`ExportWorkerError` when the worker is gone before it."""
    try:
        (code,) = _CODE.unpack(reader.recv_bytes())
        return code, reader.recv_bytes() if code != _END else b""
    except (EOFError, OSError):
        process.join(timeout=_POLL_S)
        raise ExportWorkerError(
            f"the export's worker process stopped (exit status {process.exitcode}) before finishing"
        ) from None
