"""Rows for writing the archive: the writer against a bare ``executemany``, and a whole backfill from the sandbox.

- writer: pages of 500 deliveries saved through :func:`collectors.archive.writer.save_deliveries` (row
  conversion, redaction, upsert check, rollups, search index) into a new archive, against the same rows
  already converted, inserted with one ``executemany`` per page into a new archive of the same shape
  (same indexes; nothing else fed); and against the same with the conversion
  (:func:`collectors.archive.writer.delivery_row`) timed too. Ratio: the baseline's time / the
  writer's (1.0 = as fast). Beside them, the *least writer* of this archive (:func:`bench.floor.delivery_rows`: the
  rows with their payload compressed and the full-text index, nothing checked, redacted or rolled up) against the
  same baseline: the most any writer storing this archive's shape can reach against it.
- backfill: ``python -m sandbox --volume full`` (``demo`` with ``--quick``) on a free loopback port, then
  ``moego-monitor collect --concurrency N`` into a new archive, for each N of :data:`CONCURRENCIES` (one
  webhook at a time, then the default) against the same sandbox, one after the other: wall time, and
  entries per CPU-second of the collector process (its user + system time), against the sandbox's own
  CPU over the same collection; printed beside it: user and system CPU, bytes the collector wrote and read
  per entry (``/proc/<pid>/io``: the WAL, checkpoints, archive pages read back from the OS) and the WAL's peak.
- catch-up: a pass that brings 50,000 new entries (2,000 with ``--quick``) into a copy of the large archive, written
  as a backfill writes them (each webhook newest first, pages of 500, batched commits), then the pass's end work
  (:func:`collectors.archive.compaction.densify`), against the writing alone: what the pass costs beyond its rows
  (1.0 = nothing). Printed beside it: what the rebuild of the whole archive's indexes it skips would have taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import zstandard

from collectors import archive
from collectors.archive import codec, compaction, when, writer
from collectors.config import DEFAULT_CONCURRENCY
from collectors.fanout import PageBatch

from . import floor
from .archive_gen import synthetic_deliveries
from .core import Bench, Row, free_port, load, serving, side_by_side

__all__ = ["ROWS"]

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-sandbox-key"
#: The backfill's rows: one webhook at a time (the baseline), then the default concurrency.
CONCURRENCIES = (1, DEFAULT_CONCURRENCY)


def _fresh(path: Path) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    return db


def writer_vs_executemany(bench: Bench) -> list[Row]:
    count = 10_000 if bench.quick else 50_000
    deliveries = list(synthetic_deliveries(count, webhooks=10, days=1, end=datetime(2026, 11, 1, tzinfo=timezone.utc)))
    pages = [deliveries[i: i + 500] for i in range(0, count, 500)]
    columns = writer.ALL_COLUMNS
    names = (*writer.TEXT_COLUMNS, "delivered_us")

    def ready(d, r: dict) -> tuple:
        """The row's values for ``names``: the delivery time as the writer stores it (collectors.archive.when)."""
        return tuple("" if c == "delivered_at" else r[c] for c in columns) + (when.stored_time(d.delivered_at, "")[1],)

    tuples = [[ready(d, writer.delivery_row(d, seen_at=d.delivered_at)) for d in page] for page in pages]
    insert = f"INSERT INTO deliveries ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"

    def product() -> None:
        db = _fresh(bench.workdir / "writer.db")
        for page in pages:
            with archive.transaction(db):
                writer.save_deliveries(db, page, seen_at=page[0].delivered_at)
        db.close()

    def baseline() -> None:
        db = _fresh(bench.workdir / "bare.db")
        for rows in tuples:
            with archive.transaction(db):
                db.executemany(insert, rows)
        db.close()

    def converting() -> None:
        db = _fresh(bench.workdir / "bare.db")
        for page in pages:
            with archive.transaction(db):
                db.executemany(insert, [ready(d, writer.delivery_row(d, seen_at=d.delivered_at)) for d in page])
        db.close()

    def least_writer() -> None:
        """What any writer of this archive does with parsed pages (bench.floor.delivery_rows): the rows with their
        payload compressed, and the full-text index; no checks, redaction, upsert, rollups or dictionary."""
        db = _fresh(bench.workdir / "least.db")
        compress = zstandard.ZstdCompressor(level=codec.LEVEL).compress
        rowid = 0
        for page in pages:
            with archive.transaction(db):
                rows, texts, rowid = floor.delivery_rows(page, rowid, compaction.seen_us(page[0].delivered_at), compress)
                db.executemany(floor.INSERT, rows)
                db.executemany(floor.FTS, texts)
        db.close()

    repeat = bench.repeat  # the baseline's wall time swings 1.5x between runs on a loaded machine: medians of 5
    p, b = side_by_side(product, baseline, repeat)
    p2, c = side_by_side(product, converting, repeat)
    f, b3 = side_by_side(least_writer, baseline, repeat)
    print(f"  (the least writer reaches {b3 / f:.2f}x the bare executemany: the archive writer is {f / p:.2f}x of the "
          f"way from it, {p * 1e6 / count:.1f} vs {f * 1e6 / count:.1f} us per row; load {load()})", flush=True)
    return [
        Row(f"archive writer vs bare executemany of ready rows, same indexes ({count:,} rows)", f"{count / p:,.0f} rows/s",
            f"{count / b:,.0f} rows/s", f"{b / p:.2f}x", ">= 0.5x", b / p >= 0.5),
        Row("archive writer vs delivery_row() + bare executemany, same indexes", f"{count / p2:,.0f} rows/s",
            f"{count / c:,.0f} rows/s", f"{c / p2:.2f}x", ">= 0.5x", c / p2 >= 0.5),
        Row("the least writer of this archive (rows, payload compressed, full-text index; nothing checked) vs bare "
            "executemany of ready rows: the most any writer reaches", f"{count / f:,.0f} rows/s", f"{count / b3:,.0f} rows/s",
            f"{b3 / f:.2f}x", "-", None),
    ]


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _sandbox(volume: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--rate", "0", "--quiet", "--seed", "7",
               "--volume", volume, "--api-key", API_KEY]
    with serving(command, port, "/_sandbox/health", what="the sandbox", timeout_s=300, cwd=REPO) as (base, proc):
        yield base, proc.pid


class _IoWatch:
    """Samples a running process's ``/proc/<pid>/io`` (bytes passed to write/read calls: the WAL, checkpoints,
    pages read back from the OS) and the largest size of a WAL file, every 0.2 s until :meth:`stop`."""

    def __init__(self, pid: int, wal: Path) -> None:
        self.written = self.read = self.wal_peak = 0
        self._pid, self._wal = pid, wal
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                fields = dict(line.split(": ") for line in Path(f"/proc/{self._pid}/io").read_text().splitlines())
                self.written, self.read = int(fields["wchar"]), int(fields["rchar"])
            except (OSError, ValueError, KeyError):
                pass
            try:
                self.wal_peak = max(self.wal_peak, self._wal.stat().st_size)
            except OSError:
                pass
            self._done.wait(0.2)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def backfill(bench: Bench, extra: tuple[str, ...] = ()) -> list[Row]:
    volume = "demo" if bench.quick else "full"
    rows: list[Row] = []
    with _sandbox(volume) as (base, sandbox_pid):
        for concurrency in CONCURRENCIES:
            rows += _backfill_once(bench, volume, base, sandbox_pid, ("--concurrency", str(concurrency), *extra))
    return rows


def _backfill_once(bench: Bench, volume: str, base: str, sandbox_pid: int, extra: tuple[str, ...]) -> list[Row]:
    db = bench.workdir / f"backfill-{volume}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    env.update(MOEGO_API_KEY=API_KEY, MOEGO_BASE_URL=base, PYTHONPATH=str(REPO))
    sandbox_before = _cpu_of(sandbox_pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "collectors", "collect", "--db", str(db), *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    io = _IoWatch(proc.pid, Path(f"{db}-wal"))
    out, err = proc.communicate()
    io.stop()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sandbox_cpu = _cpu_of(sandbox_pid) - sandbox_before
    if proc.returncode != 0:
        raise RuntimeError(f"collect failed: {(err or out).strip().splitlines()[-1:]}")
    user, system = after.ru_utime - children.ru_utime, after.ru_stime - children.ru_stime
    cpu = user + system
    with archive.open_archive(db, readonly=True) as conn:
        entries = conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    label = f"{volume} backfill from the sandbox ({entries:,} entries, {' '.join(extra)})"
    print(f"  ({label}: {wall:.0f} s wall, {user:.0f} s user + {system:.0f} s system CPU, "
          f"{io.written / entries / 1024:,.1f} KiB written and {io.read / entries / 1024:,.1f} KiB read per entry "
          f"(write/read syscalls), WAL peak {io.wal_peak / 1e6:,.0f} MB; load {load()})", flush=True)
    return [
        Row(f"{label}: collector CPU", f"{entries / cpu:,.0f} entries/CPU-s",
            f"sandbox {entries / sandbox_cpu:,.0f} entries/CPU-s" if sandbox_cpu else "-",
            f"{cpu / sandbox_cpu:.2f}x the sandbox's CPU" if sandbox_cpu else "-", ">= 20,000 entries/CPU-s",
            entries / cpu >= 20_000),
        Row(f"{label}: wall", f"{wall:,.0f} s ({entries / wall:,.0f} entries/s)", "-", "-",
            "< 180 s quiet (full volume)", wall < 180 if volume == "full" else None),
    ]


def catch_up_pass(bench: Bench) -> list[Row]:
    rows = bench.large_rows
    count = 2_000 if bench.quick else 50_000
    source, end = bench.archive(rows)
    db = bench.workdir / "catch-up.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    wal = Path(f"{source}-wal")
    if wal.exists() and wal.stat().st_size:  # pages not yet in the file: copy through SQLite
        with sqlite3.connect(source) as src, sqlite3.connect(db) as dst:
            src.backup(dst)
    else:
        shutil.copyfile(source, db)
    try:
        # Newer than everything archived, with ids as random as MoeGo's; MoeGo lists each webhook's newest first.
        rng = random.Random(11)
        fresh = [dataclasses.replace(d, id=f"dlv_{rng.getrandbits(64):016x}", event_id=f"{rng.getrandbits(128):032x}")
                 for d in synthetic_deliveries(count, webhooks=10, days=1, end=end + timedelta(days=1), seed=11)]
        pages = [page[i: i + 500] for page in (sorted((d for d in fresh if d.webhook_id == hook), reverse=True,
                                                      key=lambda d: d.delivered_at)
                                               for hook in sorted({d.webhook_id for d in fresh}))
                 for i in range(0, len(page), 500)]
        conn = archive.connect(db)
        archive.ensure_db_shape(conn)
        batch = PageBatch(conn)
        started = time.perf_counter()
        for page in pages:
            batch.save(lambda c, page=page: writer.save_deliveries(c, page, seen_at=page[0].delivered_at), rows=len(page))
        batch.flush()
        written = time.perf_counter() - started
        rebuilt = compaction.densify(conn, count)  # what the collector does at the end of the pass
        end_work = time.perf_counter() - started - written
        started = time.perf_counter()
        compaction.densify(conn, count, threshold=0, share=0)  # the rebuild of the whole archive's indexes
        rebuild = time.perf_counter() - started
        conn.close()
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    print(f"  (catch-up of {count:,} entries into {rows:,}: written in {written:.1f} s, the pass's end work "
          f"{end_work:.1f} s ({'rebuilt' if rebuilt else 'no rebuild'}); rebuilding the archive's indexes would take "
          f"{rebuild:.1f} s; load {load()})", flush=True)
    return [Row(f"a pass catching up {count:,} entries into {rows:,} rows: the pass vs writing its rows",
                f"{written + end_work:.1f} s", f"{written:.1f} s", f"{(written + end_work) / written:.2f}x",
                "-", None)]


ROWS = [writer_vs_executemany, backfill, catch_up_pass]
