"""Rows for the Overview in Chromium: cold (the dashboard just started) and warm (every query cached),
on the small and the large archive, with and without a common search word (see :mod:`bench.browser`), and
a Streamlit page holding one metric as the floor any page costs the browser on this machine now.

Warm loads are measured twice: in a new browser context each (an empty HTTP cache: a first visit, which
fetches and compiles Streamlit's scripts again), and in one context (a returning browser, scripts cached);
the floor likewise. The Overview opens on its Trends tab (tiles and the trend chart: three charts before
issue-9m, one layered view since); its Failures tab (four tables) is measured too, as a returning browser
opening its link."""

from __future__ import annotations

import statistics
from pathlib import Path

from .archive_gen import COMMON_WORD
from .browser import CHROMIUM, MINIMAL_APP, MINIMAL_READY, load_times, overview_url, running_dashboard
from .core import Bench, Row

__all__ = ["ROWS"]


def overview_in_chromium(bench: Bench) -> list[Row]:
    if not CHROMIUM.exists():
        return [Row("Overview in Chromium", "skipped: no /usr/bin/chromium", "-", "-", "< 2.5 s / < 1 s")]
    figures: dict[tuple[int, str], tuple[float, float]] = {}
    returning: dict[tuple[int, str], float] = {}
    failures_tab: dict[int, float] = {}
    for rows in (bench.small_rows, bench.large_rows):
        path, end = bench.archive(rows)
        for search in ("", COMMON_WORD):
            with running_dashboard(Path(path)) as base:
                url = overview_url(base, end, search=search)
                times = load_times(url, loads=4)
                returning[rows, search] = statistics.median(load_times(url, loads=4, returning=True)[1:])
                if not search:
                    failures_tab[rows] = statistics.median(load_times(overview_url(base, end, tab="Failures"), loads=4,
                                                                      charts=0, tables=4, returning=True)[1:])
            figures[rows, search] = times[0], statistics.median(times[1:])
    script = bench.workdir / "minimal_app.py"
    script.write_text(MINIMAL_APP)
    with running_dashboard(Path(path), script=script) as base:
        floor = load_times(base + "/", loads=4, ready=MINIMAL_READY)
        floor_returning = statistics.median(load_times(base + "/", loads=4, ready=MINIMAL_READY, returning=True)[1:])
    floor_cold, floor_warm = floor[0], statistics.median(floor[1:])
    out = [Row("a Streamlit page with one metric, in Chromium (the floor)",
               f"cold {floor_cold:.2f} s, warm {floor_warm:.2f} s, returning browser {floor_returning:.2f} s",
               "-", "-", "-")]
    for search in ("", COMMON_WORD):
        (cold_s, warm_s), (cold_l, warm_l) = figures[bench.small_rows, search], figures[bench.large_rows, search]
        what = f"Overview in Chromium, {bench.large_rows:,} rows" + (f", search {search!r}" if search else "")
        back_s, back_l = returning[bench.small_rows, search], returning[bench.large_rows, search]
        if search:
            out.append(Row(what + ": cold", f"{cold_l:.2f} s", f"{cold_s:.2f} s at {bench.small_rows:,}",
                           f"{cold_l / cold_s:.2f}x", "< 2 s", cold_l < 2))
            out.append(Row(what + ": warm, returning browser, against the floor", f"{back_l:.2f} s",
                           f"{floor_returning:.2f} s (one metric)", f"{back_l / floor_returning:.2f}x", "< 2 s",
                           back_l < 2))
        else:
            out.append(Row(what + ": cold", f"{cold_l:.2f} s", f"{cold_s:.2f} s at {bench.small_rows:,}",
                           f"{cold_l / cold_s:.2f}x", "< 2.5 s", cold_l < 2.5))
            out.append(Row(what + ": warm", f"{warm_l:.2f} s", f"{warm_s:.2f} s at {bench.small_rows:,}",
                           f"{warm_l / warm_s:.2f}x", "< 1 s", warm_l < 1))
            out.append(Row(what + ": warm, against the floor", f"{warm_l:.2f} s", f"{floor_warm:.2f} s (one metric)",
                           f"{warm_l / floor_warm:.2f}x", "-", None))
            out.append(Row(what + ": warm, returning browser (scripts cached)", f"{back_l:.2f} s",
                           f"{back_s:.2f} s at {bench.small_rows:,}", f"{back_l / back_s:.2f}x", "< 1 s", back_l < 1))
            out.append(Row(what + ": warm, returning browser, against the floor", f"{back_l:.2f} s",
                           f"{floor_returning:.2f} s (one metric)", f"{back_l / floor_returning:.2f}x", "-", None))
            tab = failures_tab[bench.large_rows]
            out.append(Row(what + ": its Failures tab, warm, returning browser, against the floor", f"{tab:.2f} s",
                           f"{floor_returning:.2f} s (one metric)", f"{tab / floor_returning:.2f}x", "-", None))
    return out


ROWS = [overview_in_chromium]
