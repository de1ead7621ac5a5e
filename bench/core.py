"""What every benchmark row shares: the run's settings and archives, timing side by side, one printed row.

Machines here are shared and noisy, so each figure is a median of alternating runs, and each row
reports a ratio against a baseline measured in the same run (a bare ``executemany``, the same query on
the smaller archive, the sandbox's own CPU...). Absolute times are printed too, with the load.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import httpx

from .archive_gen import cached_archive

__all__ = ["Bench", "Row", "timed", "side_by_side", "median_time"]


@dataclass
class Bench:
    """One run: its sizes (``small`` and ``large`` rows: 1 M and 5 M, or small ones with ``--quick``)."""

    quick: bool
    workdir: Path
    repeat: int = 5
    small_rows: int = 1_000_000
    large_rows: int = 5_000_000
    wal_rows: int = 400_000
    _archives: dict[int, tuple[Path, datetime]] = field(default_factory=dict)

    def archive(self, rows: int) -> tuple[Path, datetime]:
        """The cached synthetic archive of ``rows`` rows (built on first use) and its end."""
        if rows not in self._archives:
            started = time.perf_counter()
            self._archives[rows] = cached_archive(rows, log=lambda line: print(f"  ({line})", flush=True))
            spent = time.perf_counter() - started
            if spent > 5:
                print(f"  ({rows:,}-row archive ready in {spent:.0f} s)", flush=True)
        return self._archives[rows]


@dataclass(frozen=True)
class Row:
    """One line of the table: what, the product's figure, its baseline, the ratio, the target, and whether it is met."""

    what: str
    measured: str
    baseline: str
    ratio: str
    target: str
    met: bool | None = None

    def line(self) -> str:
        verdict = {True: "yes", False: "NO", None: "-"}[self.met]
        return f"| {self.what} | {self.measured} | {self.baseline} | {self.ratio} | {self.target} | {verdict} |"


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up."""
    fn()
    return statistics.median(timed(fn) for _ in range(repeat))


def side_by_side(product: Callable[[], object], baseline: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median seconds of each, run alternately ``repeat`` times after one warm-up each."""
    product(), baseline()
    p, b = [], []
    for _ in range(repeat):
        p.append(timed(product))
        b.append(timed(baseline))
    return statistics.median(p), statistics.median(b)


def load() -> str:
    """The 1/5/15-minute load averages, for the record."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], port: int, health_path: str, *, what: str, timeout_s: float, cwd: Path,
            env: dict[str, str] | None = None, poll_s: float = 0.2) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``command`` (a server on loopback ``port``) until ``health_path`` answers 200; yields (base URL, process).

    Raises ``RuntimeError`` naming ``what`` when it exits or does not answer within ``timeout_s``; the
    process is stopped when the block ends (terminated, killed after 15 s).
    """
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}{health_path}", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(poll_s)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
