"""Paired loads of the Overview in Chromium: another revision's dashboard (``--ref``, main by default, exported with
``git archive``) and this tree's, served at once over the same archive, with the floor (a Streamlit page holding one
metric), loads alternated in one Chromium, each side in its own returning browser (one context: Streamlit's
scripts come from its HTTP cache after a first, uncounted load). Prints each view's median per side, the ratio of
this tree to the ref and of each to the floor, the median of the round-by-round ratios (each round loads both
sides one after the other), and the load average before and after.

    python -m bench.paired --db bench/.cache/archive-v4-s14-1000000-10w-30d.db --rounds 6

Warm only: each URL is loaded once before the rounds (its queries cached, the browser's scripts cached), so the
figures are what a returning user sees. Views: the Overview (its Trends tab), the same with the common search
word, and with ``--tabs`` its Failures and Webhook health tabs by their links.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .archive_gen import COMMON_WORD
from .browser import (_READY, CHROMIUM, CHROMIUM_ARGS, MINIMAL_APP, MINIMAL_READY, REPO, overview_url,
                      running_dashboard)

__all__ = ["export_ref", "main"]

#: Seconds a page is left after it looks drawn before its CPU is read (Vega, for one, keeps working after its first
#: paint: the hover layer's Voronoi cells).
SETTLE_S = 2.0


def export_ref(ref: str, into: Path) -> Path:
    """``git archive ref`` of this repository unpacked under ``into``; its path."""
    target = into / ref.replace("/", "_")
    target.mkdir(parents=True)
    tar = into / "ref.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(tar), ref], check=True)
    with tarfile.open(tar) as archive:
        archive.extractall(target, filter="data")
    tar.unlink()
    return target


def _cpu(cdp) -> tuple[float, float]:
    """The page's renderer process CPU seconds so far, and its main thread's busy seconds (Chromium's metrics)."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return metrics["ProcessTime"], metrics["TaskDuration"]


def _load(context, url: str, ready: str, arg, timeout_s: float) -> tuple[float, float, float]:
    """One load of ``url`` in a new page of ``context``: (wall seconds until drawn, renderer CPU seconds and
    main-thread busy seconds until :data:`SETTLE_S` later). The page first opens the server's health check (same origin: the load that follows stays in the
    same renderer process, whose CPU is read before and after it)."""
    page = context.new_page()
    try:
        page.goto(url.split("/?")[0].rstrip("/") + "/_stcore/health")
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        cpu0, busy0 = _cpu(cdp)
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_function(ready, arg=arg, timeout=timeout_s * 1000, polling=50)
        wall = time.perf_counter() - started
        page.wait_for_timeout(SETTLE_S * 1000)  # what the page still draws after it looks ready counts too
        cpu1, busy1 = _cpu(cdp)
        return wall, cpu1 - cpu0, busy1 - busy0
    finally:
        page.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a bench archive (bench/.cache/archive-*.db)")
    parser.add_argument("--end", default="2026-11-01T00:00:00Z", help="the archive's end (the generator's: 2026-11-01)")
    parser.add_argument("--ref", default="main", help="the revision to compare with (default main)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--search", default=COMMON_WORD, help="the common word's view ('' for none)")
    parser.add_argument("--tabs", action="store_true", help="the Failures and Webhook health tabs too")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit(f"no {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    end = datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(timezone.utc)
    views: list[tuple[str, dict, int, int]] = [("overview", {}, 1, 0)]
    if args.search:
        views.append((f"search {args.search!r}", {"search": args.search}, 1, 0))
    if args.tabs:
        views += [("Failures tab", {"tab": "Failures"}, 0, 4), ("Webhook health tab", {"tab": "Webhook health"}, 0, 1)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-paired-") as scratch, contextlib.ExitStack() as stack:
        ref_tree = export_ref(args.ref, Path(scratch))
        floor_script = Path(scratch) / "minimal_app.py"
        floor_script.write_text(MINIMAL_APP)
        bases = {args.ref: stack.enter_context(running_dashboard(args.db, repo=ref_tree)),
                 "this tree": stack.enter_context(running_dashboard(args.db)),
                 "floor": stack.enter_context(running_dashboard(args.db, script=floor_script))}
        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        viewport = {"width": 1600, "height": 1200}
        contexts = {side: browser.new_context(viewport=viewport) for side in bases}
        targets: list[tuple[str, str, str, str, list]] = []  # (view, side, url, ready, arg)
        for view, kwargs, charts, tables in views:
            for side in (args.ref, "this tree"):
                targets.append((view, side, overview_url(bases[side], end, **kwargs), _READY, [charts, tables]))
        targets.append(("floor", "floor", bases["floor"] + "/", MINIMAL_READY, None))
        for view, side, url, ready, arg in targets:  # warm: queries cached, scripts in each browser's cache
            _load(contexts[side], url, ready, arg, args.timeout)
        loads: dict[tuple[str, str], list[tuple[float, float, float]]] = {(v, side): [] for v, side, *_ in targets}
        for round_ in range(args.rounds):
            ordered = targets if round_ % 2 == 0 else list(reversed(targets))
            for view, side, url, ready, arg in ordered:
                loads[view, side].append(_load(contexts[side], url, ready, arg, args.timeout))
    load_after = os.getloadavg()
    print(f"load {load_before[0]:.1f} -> {load_after[0]:.1f}; {args.rounds} rounds, medians; db {args.db.name}")
    for i, what in enumerate(("wall", "renderer CPU", "renderer main thread busy")):
        def med(view: str, side: str) -> float:
            return statistics.median(load[i] for load in loads[view, side])
        floor = med("floor", "floor")
        print(f"-- {what} per load (s); the floor (one metric, returning browser) {floor:.2f} s "
              f"{[round(load[i], 2) for load in loads['floor', 'floor']]}")
        for view, *_ in views:
            ref_s, mine_s = med(view, args.ref), med(view, "this tree")
            print(f"{view}: {args.ref} {ref_s:.2f} ({ref_s / floor:.2f}x floor), this tree {mine_s:.2f} "
                  f"({mine_s / floor:.2f}x floor), this tree / {args.ref} {mine_s / ref_s:.2f}x")
            # Each round loads both sides one after the other: the median of the rounds' own ratios pairs each load
            # with its neighbour under the same momentary load (less noisy than the ratio of the two medians).
            rounds = [m[i] / r[i] for m, r in zip(loads[view, "this tree"], loads[view, args.ref])]
            print(f"    round by round, this tree / {args.ref}: median {statistics.median(rounds):.2f}x, "
                  f"{sum(x < 1 for x in rounds)} of {len(rounds)} rounds below 1")
            print(f"    {args.ref}: {[round(load[i], 2) for load in loads[view, args.ref]]}")
            print(f"    this tree: {[round(load[i], 2) for load in loads[view, 'this tree']]}")


if __name__ == "__main__":
    main()
