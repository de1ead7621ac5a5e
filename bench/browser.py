"""The Overview in a real Chromium (Playwright, ``/usr/bin/chromium``): cold (nothing cached) and warm
(every query cached), on a cached synthetic archive, with where a warm load's time goes.

A load is timed from ``page.goto`` until the Overview is drawn: its tiles shown, its charts plotted (the
Vega-Lite trend chart (one layered view since issue-9m, three charts before), or however many a version draws them in; a plotly figure counts too, for older
versions), its tables painted, and
Streamlit's "running" widget gone. The Overview opens on its Trends tab, which holds no table; its Failures
tab (``tab="Failures"``: four tables, no chart) and Webhook health tab (one table) are loaded by their links.
(Before issue-9j the page drew all of it at once: three charts and five tables.) The window is a fixed custom range
(30 days, not aligned on hours) given in the URL, so a second load hits every cached query.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from .core import free_port, serving

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

__all__ = ["overview_url", "running_dashboard", "load_times"]


def overview_url(base: str, end: datetime, *, search: str = "", days: int = 30, tab: str = "") -> str:
    """The Overview of the ``days`` before ``end`` (minus 17 minutes, so both edges are ragged), on ``tab``
    (``Failures``, ``Webhook health``; the Trends tab when empty)."""
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    since, until = end - timedelta(days=days, minutes=17), end - timedelta(minutes=17)
    url = f"{base}/?range=custom&since={since.strftime(fmt)}&until={until.strftime(fmt)}"
    return url + (f"&q={search}" if search else "") + (f"&tab={quote(tab)}" if tab else "")


#: The floor: a Streamlit page with a title and one metric (what any page costs the browser).
MINIMAL_APP = 'import streamlit as st\nst.title("Overview")\nst.metric("Deliveries", "1")\n'
MINIMAL_READY = """() => document.querySelector('[data-testid="stMetric"]') !== null
  && !document.querySelector('[data-testid="stStatusWidget"]')"""


@contextlib.contextmanager
def running_dashboard(db: Path, script: Path | None = None, repo: Path = REPO) -> Iterator[str]:
    """The dashboard of ``repo`` as its users start it (this tree by default; another one, e.g. main's exported with
    ``git archive``, imports its own ``dashboard`` and ``collectors``): ``python -m dashboard`` (warmed up, since
    issue-9o) where the tree has it, else ``streamlit run dashboard/app.py``; or ``streamlit run script``. On
    loopback over ``db``; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    env["MOEGO_MONITOR_DB"] = str(Path(db).resolve())
    if script is None and (repo / "dashboard" / "serve.py").exists():
        start = [sys.executable, "-m", "dashboard"]
    else:
        start = [sys.executable, "-m", "streamlit", "run", str(script or repo / "dashboard" / "app.py")]
    command = [*start, "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--browser.gatherUsageStats", "false"]
    with serving(command, port, "/_stcore/health", what="the dashboard", timeout_s=60, cwd=repo, env=env,
                 poll_s=0.3) as (base, _):
        yield base


#: Drawn: the run finished (Streamlit's "running" widget gone, so every element has arrived), the eight tiles shown,
#: at least ``charts`` charts and ``tables`` grids on the page, and every chart and grid there drawn (however many
#: charts a version draws the trends in: three Vega-Lite views, or one).
_READY = """([charts, tables]) => {
  const boxes = document.querySelectorAll('[data-testid="stPlotlyChart"], [data-testid="stVegaLiteChart"]');
  const drawn = [...boxes].filter(b => b.querySelector('.main-svg, canvas, svg.marks')).length;
  const gridBoxes = document.querySelectorAll('[data-testid="stDataFrame"]');
  const grids = [...gridBoxes].filter(b => b.querySelector('canvas')).length;
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const tiles = document.querySelectorAll('[data-testid="stMetric"]').length;
  return tiles >= 8 && !running && boxes.length >= charts && drawn === boxes.length
    && gridBoxes.length >= tables && grids === gridBoxes.length;
}"""


def load_times(url: str, *, loads: int = 3, charts: int = 1, tables: int = 0, timeout_s: float = 180,
               ready: str | None = None, returning: bool = False) -> list[float]:
    """Seconds for each of ``loads`` loads of ``url``, each in a new browser page (a new Streamlit session);
    the first is cold when the dashboard was just started.

    By default each page opens in a new browser context, i.e. with an empty HTTP cache: every load fetches
    and compiles Streamlit's scripts again, as a first visit does. ``returning=True`` opens every page in one
    context, as a browser that was here before: from the second load on, the scripts (served as immutable,
    cached for a year) come from its cache."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        viewport = {"width": 1600, "height": 1200}
        shared = browser.new_context(viewport=viewport) if returning else None
        try:
            for _ in range(loads):
                page = shared.new_page() if shared else browser.new_page(viewport=viewport)
                started = time.perf_counter()
                page.goto(url)
                if ready:
                    page.wait_for_function(ready, timeout=timeout_s * 1000, polling=50)
                else:
                    page.wait_for_function(_READY, arg=[charts, tables], timeout=timeout_s * 1000, polling=50)
                times.append(time.perf_counter() - started)
                page.close()
        finally:
            browser.close()
    return times


if __name__ == "__main__":
    from .archive_gen import cached_archive

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    path, end = cached_archive(rows)
    with running_dashboard(path) as base:
        for search in ("", *sys.argv[2:]):
            print(f"{rows:,} rows, search {search!r}:", [f"{t:.2f}" for t in load_times(overview_url(base, end, search=search))])
