"""``python -m bench [--quick] [--only NAME]``: every row of issue #9's table, and earlier issues' rows, as ratios.

Machines here are shared and noisy, so nothing is judged by one absolute time: each row is a median
of alternating runs, against a baseline measured in the same run (see :mod:`bench.core`). Large
synthetic archives (1 M and 5 M rows over 30 days; 20 k and 100 k with ``--quick``) are built once
and kept in ``bench/.cache/`` (ignored by git), so a rerun starts at once.

The table is :data:`ROWS`, a plain list of row functions (``Bench -> list[Row]``): a module adds its
rows by appending its own functions there. Rows of earlier issues, as lines:

- overview: the dashboard's 30-day hourly aggregate (rollup for whole hours + raw edges) vs the
  same aggregate computed from the raw rows;
- page: the deliveries table's deepest page by keyset vs the same page by LIMIT/OFFSET;
- export: peak Python memory of the streaming CSV export vs pandas read_sql + to_csv;
- body shapes: the writer and the search index with base64 payloads vs the same payloads as objects;
- checks: saving pages with the collector's contract checks (``collectors.validate`` and the
  archived-owner lookup) vs saving the same pages unchecked;
- read: the client's bounded read of a full 500-entry page (streamed, size-capped, deadline at the
  socket) vs httpx's plain ``response.json()``, over a real loopback socket, time and peak memory;
- wal: the peak size of the WAL during a backfill while dashboard-like readers query without pause,
  with the archive's WAL bound (checkpoint after commits, ``journal_size_limit``) vs without it;
- storage and export (:mod:`bench.storage`): bytes per entry before and after the upgrade vs gzip'd JSON
  lines, the upgrade's time per million rows, the export vs ``sqlite3 -csv``, its peak RSS.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import statistics
import os
import tempfile
import threading
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pandas as pd

from collectors import archive
from collectors.archive import writer
from collectors.archive.when import key_of

from .archive_gen import synthetic_deliveries
from . import chromium, floor, reads, writes
from .bodies import bench_body_shapes
from .core import Bench, Row, load
from .storage import bench_storage


def _median_time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(product: Callable[[], object], baseline: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median seconds of each, run alternately ``repeat`` times after one warm-up each."""
    product(), baseline()
    p, b = [], []
    for _ in range(repeat):
        p.append(_median_time(product))
        b.append(_median_time(baseline))
    return statistics.median(p), statistics.median(b)


def peak_memory(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_overview(conn: sqlite3.Connection, end, repeat: int) -> str:
    from dashboard import stats
    from collectors.archive.filters import Filters

    filters = Filters(time_range="custom", since=end - timedelta(days=30, minutes=17), until=end - timedelta(minutes=17))
    window = filters.window(end)
    product = lambda: stats.aggregate(conn, filters, window, grain="hour")  # noqa: E731
    baseline = lambda: stats._raw(conn, filters, window.since_text, window.until_text, "hour", ())  # noqa: E731
    a, b = product(), baseline()
    assert int(a["deliveries"].sum()) == int(b["deliveries"].sum()), "rollup and raw rows disagree"
    p, q = side_by_side(product, baseline, repeat)
    return f"overview 30 d hourly: rollup {q / p:6.1f}x faster than raw rows ({int(a['deliveries'].sum()):,} deliveries)"


def bench_page(conn: sqlite3.Connection, end, repeat: int) -> str:
    from dashboard import queries
    from collectors.archive.filters import Filters

    filters = Filters(time_range="custom", since=end - timedelta(days=30), until=end, webhooks=("whk_3",))
    window = filters.window(end)
    # Walk to a page deep in the range once, then time fetching it again by keyset vs by OFFSET.
    page, depth = queries.delivery_page(conn, filters, window, limit=200), 1
    while page.next is not None and depth < 60:
        cursor = page.next
        page, depth = queries.delivery_page(conn, filters, window, after=cursor, limit=200), depth + 1
    offset = (depth - 1) * 200
    product = lambda: queries.delivery_page(conn, filters, window, after=cursor, limit=200)  # noqa: E731
    baseline = lambda: conn.execute(  # noqa: E731
        "SELECT delivered_at, id FROM deliveries WHERE webhook_id = ? AND delivered_key >= ? AND delivered_key < ?"
        " ORDER BY delivered_key DESC, id DESC LIMIT 201 OFFSET ?",
        ("whk_3", key_of(window.since_text), key_of(window.until_text), offset),
    ).fetchall()
    p, q = side_by_side(product, baseline, repeat)
    return f"deliveries page {depth} of 200: keyset {q / p:6.1f}x faster than OFFSET"


def bench_export(conn: sqlite3.Connection, end) -> str:
    from collectors.archive.export import export_csv
    from collectors.archive.filters import Filters

    filters = Filters(time_range="custom", since=end - timedelta(days=30), until=end)

    def product() -> None:
        export_csv(conn, filters, io.TextIOWrapper(io.BufferedWriter(_Null()), encoding="utf-8"), now=end)

    def baseline() -> None:
        pd.read_sql_query("SELECT * FROM deliveries", conn).to_csv(io.TextIOWrapper(io.BufferedWriter(_Null()), encoding="utf-8"))

    p, b = peak_memory(product), peak_memory(baseline)
    return f"export peak memory: streaming {b / p:6.1f}x smaller than pandas ({p / 1e6:.1f} MB vs {b / 1e6:.1f} MB)"


class _Null(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def _backfill_with_readers(path: Path, pages: list[list], readers: int) -> tuple[int, int, int]:
    """Write ``pages`` (one transaction each) while ``readers`` threads read as the dashboard does during a backfill:
    the overview's tiles and the deliveries count with a payload search over the 15 days, and the first page,
    each on a connection of its own per view (as :mod:`dashboard.reads` does).

    Returns the peak WAL size (sampled after every commit and by a sampler thread), its size at the end, and the
    reads done.
    """
    from collectors.archive.filters import Filters
    from dashboard import queries

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    wal = Path(f"{path}-wal")
    end = pages[-1][-1].delivered_at
    filters = Filters(time_range="custom", since=end - timedelta(days=15), until=end)
    searching = Filters(time_range="custom", since=end - timedelta(days=15), until=end, search="bath")
    window = filters.window(end)
    stop = threading.Event()
    peak, reads = [0], [0]

    def size() -> int:
        try:
            return os.path.getsize(wal)
        except OSError:
            return 0

    def read() -> None:
        while not stop.is_set():
            with archive.open_archive(path, readonly=True) as conn:
                queries.tiles(conn, filters, window, end)
                queries.count_deliveries(conn, searching, window)
                queries.delivery_page(conn, filters, window, limit=50)
            reads[0] += 1

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], size())
            time.sleep(0.005)

    threads = [threading.Thread(target=read) for _ in range(readers)] + [threading.Thread(target=sample)]
    for t in threads:
        t.start()
    try:
        for page in pages:
            with archive.transaction(db):
                writer.save_deliveries(db, page, seen_at=end)
            peak[0] = max(peak[0], size())
    finally:
        stop.set()
        for t in threads:
            t.join()
    final = size()
    db.close()
    return peak[0], final, reads[0]


def bench_wal(workdir: Path, rows: int, readers: int = 3) -> str:
    from collectors.archive import schema

    deliveries = list(synthetic_deliveries(rows, webhooks=10, days=15,
                                           end=pd.Timestamp("2026-11-01", tz="UTC").to_pydatetime()))
    pages = [deliveries[i : i + 500] for i in range(0, len(deliveries), 500)]
    bound = schema.WAL_LIMIT_BYTES
    try:
        schema.WAL_LIMIT_BYTES = None  # the baseline: SQLite's automatic checkpoints only, as before #11
        base_peak, base_final, base_reads = _backfill_with_readers(workdir / "wal-base.db", pages, readers)
    finally:
        schema.WAL_LIMIT_BYTES = bound
    peak, final, done = _backfill_with_readers(workdir / "wal.db", pages, readers)
    db_size = os.path.getsize(workdir / "wal.db")
    # Either way round: readers that keep SQLite's own checkpoints from finishing let its WAL grow past the bound
    # (229 MB against 67 MB when first measured); readers that do not, leave it under it.
    return (f"WAL during a {rows:,}-row backfill with {readers} readers: peak {peak / 1e6:.0f} MB bound vs "
            f"{base_peak / 1e6:.0f} MB with SQLite's own checkpoints only ({peak / base_peak:.2f}x); after it "
            f"{final / 1e6:.0f} MB vs {base_final / 1e6:.0f} MB; archive {db_size / 1e6:.0f} MB; {done:,} vs {base_reads:,} reads")


def bench_checks(workdir: Path, repeat: int) -> str:
    from collectors import validate

    pages = list(synthetic_deliveries(5000, webhooks=1, days=1, end=pd.Timestamp("2026-11-01", tz="UTC").to_pydatetime()))
    chunks = [pages[i : i + 500] for i in range(0, len(pages), 500)]
    start = min(d.delivered_at for d in pages)
    end = max(d.delivered_at for d in pages) + timedelta(seconds=1)
    webhook_id = pages[0].webhook_id

    def save(checked: bool) -> None:
        path = workdir / ("checked.db" if checked else "unchecked.db")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = archive.connect(path)
        archive.ensure_db_shape(db)
        guard = validate.PageGuard.for_span(end - start, 500)
        for n, chunk in enumerate(chunks):
            with archive.transaction(db):
                existing = None
                if checked:  # as collectors.sync does: one lookup of the page's ids serves the check and the save
                    existing = writer.archived(db, [d.id for d in chunk])
                    problem = guard.add(len(chunk), f"t{n}") or validate.check_page(
                        chunk, webhook_id=webhook_id, start=start, end=end, page_size=500,
                        archived_under=existing.owners())
                    assert problem is None, problem
                writer.save_deliveries(db, chunk, seen_at=chunk[0].delivered_at, existing=existing)
        db.close()

    p, b = side_by_side(lambda: save(True), lambda: save(False), repeat)
    return f"contract checks: saving checked pages takes {p / b:5.2f}x the time of saving them unchecked"


def bench_read(repeat: int) -> str:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from collectors import client as api

    entry = {"id": "dlv_x", "webhookId": "whk_1", "eventType": "APPOINTMENT_CREATED", "deliveredAt": "2026-11-01T00:00:00Z",
             "requestBody": "A" * 2000, "responseBody": "B" * 5464, "responseStatus": 200, "success": True}
    body = json.dumps({"webhooks": [dict(entry, id=f"w{i}") for i in range(500)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with api.MoeGoClient(api.make_http_client(url, "bench-key")) as product_client, \
                httpx.Client(base_url=url) as plain:
            def product() -> None:
                product_client._call("ListWebhooks", "POST", "/v1/webhooks:list", body={})

            def baseline() -> None:
                plain.post("/v1/webhooks:list", json={}).json()

            p, b = side_by_side(product, baseline, repeat)
            mp, mb = peak_memory(product), peak_memory(baseline)
    finally:
        server.shutdown()
        server.server_close()
    return (f"bounded read of a {len(body) / 1e6:.1f} MB page: {p / b:5.2f}x the time and {mp / mb:5.2f}x the "
            "peak memory of httpx's plain response.json()")


def _lines(lines: list[str]) -> list[Row]:
    return [Row(line.strip(), "-", "-", "-", "-") for line in lines]


def earlier_rows(bench: Bench) -> list[Row]:
    """Rollup vs raw rows, keyset vs OFFSET and export memory on the small archive; body shapes."""
    path, end = bench.archive(bench.small_rows)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        lines = [bench_overview(conn, end, bench.repeat), bench_page(conn, end, bench.repeat), bench_export(conn, end)]
    finally:
        conn.close()
    return _lines(lines + bench_body_shapes(bench.workdir, bench.repeat, side_by_side))


def checks_rows(bench: Bench) -> list[Row]:
    """The collector's contract checks on the write path (#11)."""
    return _lines([bench_checks(bench.workdir, bench.repeat)])


def read_rows(bench: Bench) -> list[Row]:
    """The client's bounded read of a page (#11)."""
    return _lines([bench_read(bench.repeat)])


def wal_rows(bench: Bench) -> list[Row]:
    """The WAL under readers during a backfill, bound vs unbound (#11)."""
    return _lines([bench_wal(bench.workdir, bench.wal_rows)])


def storage_rows(bench: Bench) -> list[Row]:
    """Storage per entry vs gzip'd JSON lines, the upgrade's time, the export vs ``sqlite3 -csv`` (#9 part A)."""
    return _lines(bench_storage(1 if bench.quick else 3, repeat=bench.repeat if bench.quick else 3))


#: The table, in order. Each function returns its rows; add a module's rows by adding its functions.
ROWS: list[Callable[[Bench], list[Row]]] = [
    *reads.ROWS,
    *writes.ROWS,
    *floor.ROWS,
    *chromium.ROWS,
    earlier_rows,
    checks_rows,
    read_rows,
    wal_rows,
    storage_rows,
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small archives (20 k / 100 k rows), demo-volume backfill")
    parser.add_argument("--only", action="append", default=[], help="run only rows whose function name contains this")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--wal-rows", type=int, default=None, help="deliveries written in the WAL benchmark")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moego-bench-") as tmp:
        bench = Bench(quick=args.quick, workdir=Path(tmp), repeat=args.repeat)
        if args.quick:
            bench.small_rows, bench.large_rows = 20_000, 100_000
        bench.wal_rows = args.wal_rows or (50_000 if args.quick else 400_000)
        print(f"load {load()} (1/5/15 min) on {os.cpu_count()} CPUs")
        print("| what | measured | baseline | ratio | target | met |")
        print("|---|---|---|---|---|---|")
        for row_fn in ROWS:
            if args.only and not any(name in row_fn.__name__ for name in args.only):
                continue
            started = time.perf_counter()
            try:
                rows = row_fn(bench)
            except Exception as exc:  # a row that cannot run says so and the table goes on
                rows = [Row(row_fn.__name__, f"failed: {exc}", "-", "-", "-", False)]
            for row in rows:
                print(row.line(), flush=True)
            print(f"  ({row_fn.__name__}: {time.perf_counter() - started:.0f} s, load {load()})", flush=True)


if __name__ == "__main__":
    main()
