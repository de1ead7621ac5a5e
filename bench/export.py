"""``moego-monitor export`` against ``sqlite3 -csv`` of the same columns in the same order, on one archive's rows.

:func:`measure` runs both as subprocesses, alternately, ``repeat`` times each: ours over an archive whose
bodies are compressed payloads (what the collector writes), ``sqlite3 -csv`` over the same rows with every
field a plain text column (the archive before compression: its best case). It reports rows per second by
wall time and by CPU time (every process of the export counted: its workers too) as ratios, and the peak
memory of the export: the largest RSS any one of its processes reached, and the largest sum over them,
sampled every 10 ms while it runs (a worker's pages shared with the parent count twice: an upper bound).

``python -m bench.export [--rows 1000000] [--repeat 3] [--against /work/main]`` does it on the synthetic archive of ``--rows`` rows
(:func:`bench.archive_gen.cached_archive`, text columns: the baseline's) and a compacted copy of it (ours;
cached beside it, so a rerun is quick). :mod:`bench.storage` does it on the full-volume-like archive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from collectors import archive
from collectors.archive import compaction

from .archive_gen import CACHE_DIR, GENERATOR_VERSION, cached_archive

__all__ = ["EXPORT_COLUMNS", "baseline_query", "measure", "main"]

#: The export's columns as ``sqlite3 -csv`` selects them from the text columns (the encodings as 0/1).
EXPORT_COLUMNS = (
    "id, webhook_id, event_type, event_id, delivered_at, success, response_status, status_class, error_class, "
    "duration_ms, retry_count, error, request_url, delivered_to, request_headers, response_headers, request_body, "
    "response_body, request_body_base64, response_body_base64"
)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc`` (those that exist at this moment)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as handle:
                    todo.extend(int(c) for c in handle.read().split())
        except OSError:
            continue
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run(argv: list[str], stdout_path: Path, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> tuple[float, float, int, int, bytes]:
    """Wall seconds, CPU seconds (the process and its descendants), the largest RSS of one process (bytes),
    the largest RSS summed over the process tree (both sampled every 10 ms) and the stderr of a subprocess.

    Not ``ru_maxrss``: on Linux a child's counts the RSS of the forked copy of this process before its
    ``exec``, so after building an archive in process it says this process's size, not the export's."""
    peak_sum, peak_one = [0], [0]
    with open(stdout_path, "wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env, cwd=cwd)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                sizes = [_rss(p) for p in _tree(child.pid)]
                peak_sum[0] = max(peak_sum[0], sum(sizes))
                peak_one[0] = max(peak_one[0], *sizes, 0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert child.stderr is not None
        said = child.stderr.read()  # a line or two; the child ends after it
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.stderr.close()
        done.set()
        sampler.join()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{argv[0]} failed ({os.waitstatus_to_exitcode(status)}): {said.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime, peak_one[0], peak_sum[0], said


def baseline_query(db: Path) -> str:
    """The SELECT ``sqlite3 -csv`` runs on ``db``: the export's columns in the export's order (delivery time, then
    id), by the time index that archive has: ``delivered_key`` from schema 13 on, ``delivered_at`` (fixed-width
    text, the same order) in the schema-3 archive :mod:`bench.storage` upgrades from."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_xinfo(deliveries)")}
    finally:
        conn.close()
    order = "delivered_key" if "delivered_key" in columns else "delivered_at"
    return f"SELECT {EXPORT_COLUMNS} FROM deliveries ORDER BY {order}, id"


def _export_argv(db: Path) -> list[str]:
    return [sys.executable, "-m", "collectors", "export", "--since", "0001-01-01", "--until", "9999-12-31",
            "--db", str(db), "--out", "-"]


def measure(baseline_db: Path, ours_db: Path, work: Path, rows: int, repeat: int,
            against: Path | None = None) -> list[str]:
    """The lines of the export row: ours on ``ours_db`` vs ``sqlite3 -csv`` on ``baseline_db`` (same rows), and,
    with ``against`` (another checkout, e.g. main's), that version's export on ``ours_db`` too, alternately."""
    sqlite3_cli = shutil.which("sqlite3")
    if not sqlite3_cli:
        return ["export vs sqlite3 -csv: skipped (install Debian's sqlite3)"]
    base_argv = [sqlite3_cli, "-csv", "-readonly", str(baseline_db), baseline_query(baseline_db)]
    other_env = {**os.environ, "PYTHONPATH": str(against)} if against is not None else None
    if other_env is not None:
        found = subprocess.run([sys.executable, "-c", "import collectors; print(collectors.__file__)"], env=other_env,
                               cwd=against, capture_output=True, text=True).stdout.strip()
        if not found.startswith(str(against)):
            raise RuntimeError(f"--against {against}: its `python -m collectors` imports {found or 'nothing'}")
    ours, base, other = [], [], []
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    for _ in range(repeat):
        ours.append(_run(_export_argv(ours_db), work / "ours.csv"))
        if other_env is not None:
            # From its folder: `python -m` puts the working directory first on sys.path, before PYTHONPATH.
            other.append(_run(_export_argv(ours_db), work / "other.csv", env=other_env, cwd=against))
        base.append(_run(base_argv, work / "base.csv"))
    load_after = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    med = lambda xs, i: sorted(x[i] for x in xs)[len(xs) // 2]  # noqa: E731
    walls = lambda xs: ", ".join(f"{x[0]:.2f}" for x in xs)  # noqa: E731
    said = ours[-1][4].decode(errors="replace")  # "exported N deliveries (sha256 ...)"
    written = "all" if f"exported {rows:,} deliveries" in said else f"NOT all: {said.strip()}"
    lines = [
        f"export of {rows:,} rows vs sqlite3 -csv (same columns and order; ours decompresses), load {load} -> "
        f"{load_after}: {med(base, 0) / med(ours, 0):.2f}x the rows/s by wall ({rows / med(ours, 0):,.0f} vs "
        f"{rows / med(base, 0):,.0f} rows/s; walls {walls(ours)} s vs {walls(base)} s), "
        f"{med(base, 1) / med(ours, 1):.2f}x by CPU ({med(ours, 1):.1f} s vs {med(base, 1):.1f} s, every process)",
        f"export peak RSS: {max(x[2] for x in ours) / 1e6:,.0f} MB in one process, {max(x[3] for x in ours) / 1e6:,.0f} MB "
        f"summed over its processes (sqlite3 -csv {max(x[2] for x in base) / 1e6:,.0f} MB); rows written {written}",
    ]
    if other:
        same = other[-1][4].split(b"(sha256 ")[-1] == ours[-1][4].split(b"(sha256 ")[-1]
        lines.append(
            f"{against}'s export, same runs: {med(base, 0) / med(other, 0):.2f}x sqlite3 -csv's rows/s by wall "
            f"(walls {walls(other)} s), {med(base, 1) / med(other, 1):.2f}x by CPU ({med(other, 1):.1f} s); this one "
            f"{med(other, 0) / med(ours, 0):.2f}x its rows/s by wall, {med(other, 1) / med(ours, 1):.2f}x by CPU; peak "
            f"RSS {max(x[2] for x in other) / 1e6:,.0f} MB / {max(x[3] for x in other) / 1e6:,.0f} MB summed; "
            f"{'the same' if same else 'NOT the same'} sha256")
    return lines


def compacted_copy(rows: int, log=print) -> tuple[Path, Path]:
    """The cached synthetic archive of ``rows`` rows (bodies in text columns) and a compacted copy of it."""
    plain, _ = cached_archive(rows, log=log)
    packed = CACHE_DIR / f"export-compacted-v{GENERATOR_VERSION}-s{archive.SCHEMA_VERSION}-{rows}.db"
    if not packed.exists():
        log(f"compacting a copy of the {rows:,}-row archive (once) ...")
        partial = packed.with_suffix(".building")
        shutil.copyfile(plain, partial)
        conn = archive.connect(partial)
        compaction.compact(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        partial.rename(packed)
    return plain, packed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout (e.g. /work/main) whose export runs alongside")
    args = parser.parse_args()
    plain, packed = compacted_copy(args.rows)
    work = CACHE_DIR / "export-work"
    work.mkdir(exist_ok=True)
    try:
        for line in measure(plain, packed, work, args.rows, args.repeat, args.against):
            print(line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
