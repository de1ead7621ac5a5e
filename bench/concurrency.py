"""What ``collect --concurrency N`` buys against a MoeGo that is a round trip away (``python -m bench.concurrency``).

The sandbox answers from the same machine in microseconds, so a collector there is CPU-bound and reading several
webhooks at once only adds contention (hence the default of 1 for a base URL on this host). Against MoeGo over the
internet every page is a round trip. ``python -m sandbox --latency MS`` adds that round trip before each answer;
this bench backfills the same sandbox at ``--concurrency 1`` (the baseline) and at each N, into a new archive each
time, alternating the order between repeats, and prints each one's wall time and entries per second as a ratio
against concurrency 1. Every pass must archive the same entries (checked: nothing lost, nothing doubled).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .core import free_port, load, serving

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-sandbox-key"


def _collect(base: str, db: Path, concurrency: int) -> tuple[float, int]:
    """One backfill into a new archive ``db``: (wall seconds, entries archived)."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    env.update(MOEGO_API_KEY=API_KEY, MOEGO_BASE_URL=base, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--db", str(db),
                           "--concurrency", str(concurrency)], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"collect failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        entries = conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        distinct = conn.execute("SELECT COUNT(DISTINCT id) FROM deliveries").fetchone()[0]
    if distinct != entries:
        raise RuntimeError(f"concurrency {concurrency}: {entries - distinct} entries doubled")
    return wall, entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency", description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=80.0, metavar="MS",
                        help="round trip added to each sandbox answer (default 80 ms: Europe to a US region)")
    parser.add_argument("--volume", choices=("demo", "full"), default="demo")
    parser.add_argument("--history-days", type=int, default=14,
                        help="days of history (default 14: none of it expires between passes, so each archives the same)")
    parser.add_argument("--concurrency", type=int, action="append", default=None,
                        help="N to compare with 1 (repeatable; default 2 and 4)")
    parser.add_argument("--repeat", type=int, default=2, help="passes per N, alternating the order (default 2)")
    args = parser.parse_args(argv)
    levels = [1, *sorted(set(args.concurrency or [2, 4]) - {1})]
    port = free_port()
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--rate", "0", "--quiet", "--seed", "7",
               "--volume", args.volume, "--history-days", str(args.history_days), "--api-key", API_KEY,
               "--latency", str(args.latency)]
    walls: dict[int, list[float]] = {n: [] for n in levels}
    counts: set[int] = set()
    print(f"sandbox --volume {args.volume} --latency {args.latency:g} ms; load at start {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp, \
            serving(command, port, "/_sandbox/health", what="the sandbox", timeout_s=300, cwd=REPO) as (base, _):
        for round_ in range(args.repeat):
            for n in (levels if round_ % 2 == 0 else list(reversed(levels))):
                wall, entries = _collect(base, Path(tmp) / f"c{n}.db", n)
                walls[n].append(wall)
                counts.add(entries)
                print(f"  --concurrency {n}: {wall:.1f} s, {entries:,} entries ({entries / wall:,.0f}/s); load {load()}",
                      flush=True)
    if len(counts) != 1:
        raise RuntimeError(f"the passes archived different numbers of entries: {sorted(counts)}")
    entries = counts.pop()
    base_wall = statistics.median(walls[1])
    print(f"\n| concurrency | wall (median of {args.repeat}) | entries/s | vs --concurrency 1 |")
    print("|---|---|---|---|")
    for n in levels:
        wall = statistics.median(walls[n])
        print(f"| {n} | {wall:.1f} s | {entries / wall:,.0f} | {base_wall / wall:.2f}x faster |")
    print(f"\n{entries:,} entries each pass; load at the end {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
