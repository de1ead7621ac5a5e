"""Rows for the Overview in Chromium: cold (the dashboard just started) and warm (every query cached),
on the small and the large archive, with and without a common search word (see :mod:`bench.browser`)."""

from __future__ import annotations

import statistics
from pathlib import Path

from .archive_gen import COMMON_WORD
from .browser import CHROMIUM, load_times, overview_url, running_dashboard
from .core import Bench, Row

__all__ = ["ROWS"]


def overview_in_chromium(bench: Bench) -> list[Row]:
    if not CHROMIUM.exists():
        return [Row("Overview in Chromium", "skipped: no /usr/bin/chromium", "-", "-", "< 2.5 s / < 1 s")]
    figures: dict[tuple[int, str], tuple[float, float]] = {}
    for rows in (bench.small_rows, bench.large_rows):
        path, end = bench.archive(rows)
        for search in ("", COMMON_WORD):
            with running_dashboard(Path(path)) as base:
                times = load_times(overview_url(base, end, search=search), loads=4)
            figures[rows, search] = times[0], statistics.median(times[1:])
    out = []
    for search in ("", COMMON_WORD):
        (cold_s, warm_s), (cold_l, warm_l) = figures[bench.small_rows, search], figures[bench.large_rows, search]
        what = f"Overview in Chromium, {bench.large_rows:,} rows" + (f", search {search!r}" if search else "")
        if search:
            out.append(Row(what + ": cold", f"{cold_l:.2f} s", f"{cold_s:.2f} s at {bench.small_rows:,}",
                           f"{cold_l / cold_s:.2f}x", "< 2 s", cold_l < 2))
        else:
            out.append(Row(what + ": cold", f"{cold_l:.2f} s", f"{cold_s:.2f} s at {bench.small_rows:,}",
                           f"{cold_l / cold_s:.2f}x", "< 2.5 s", cold_l < 2.5))
            out.append(Row(what + ": warm", f"{warm_l:.2f} s", f"{warm_s:.2f} s at {bench.small_rows:,}",
                           f"{warm_l / warm_s:.2f}x", "< 1 s", warm_l < 1))
    return out


ROWS = [overview_in_chromium]
