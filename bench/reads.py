"""Rows for reading the archive: search (rare and common words), failures by status, the Overview's queries.

Each runs on the small and the large cached archive (1 M and 5 M rows over 30 days), uncached (the
dashboard's ``st.cache_data`` is not involved): the ratio large/small is how the cost grows with the
archive, 1.0 being flat. ``year_window`` reads a year-long window of a year-long archive (3 M rows over 365
days; 100 k with ``--quick``) with the daily rollup and, side by side, through the hours alone.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from collectors import archive
from collectors.archive.filters import Filters, Window
from dashboard import queries, stats

from .archive_gen import COMMON_WORD, RARE_WORD, cached_archive
from .core import Bench, Row, median_time, side_by_side

__all__ = ["ROWS"]


def _window(end) -> tuple[Filters, Window]:
    filters = Filters(time_range="custom", since=end - timedelta(days=30, minutes=17), until=end - timedelta(minutes=17))
    return filters, filters.window(end)


def _on_both(bench: Bench, measure) -> tuple[float, float]:
    out = []
    for rows in (bench.small_rows, bench.large_rows):
        path, end = bench.archive(rows)
        conn = archive.connect(path, readonly=True)
        try:
            out.append(measure(conn, end))
        finally:
            conn.close()
    return out[0], out[1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def rare_search(bench: Bench) -> list[Row]:
    """A rare word over 30 days: the count and the first page, on the large archive and the small one."""
    rows = []
    for name, call in (("count", lambda c, f, w: queries.count_deliveries(c, f, w)),
                       ("first page", lambda c, f, w: queries.delivery_page(c, f, w, limit=50))):
        def measure(conn, end, call=call):
            filters, window = _window(end)
            view = filters.with_changes(search=RARE_WORD)
            return median_time(lambda: call(conn, view, window), bench.repeat)

        small, large = _on_both(bench, measure)
        rows.append(Row(f"rare word, 30 days, {bench.large_rows:,} rows: {name}", _ms(large),
                        f"{_ms(small)} at {bench.small_rows:,}", f"{large / small:.2f}x", "< 50 ms", large < 0.05))
    return rows


def _overview_queries(conn, filters: Filters, window: Window) -> None:
    """Every query the Overview runs (as :mod:`dashboard.views.overview` does), uncached."""
    if filters.search:
        window = queries.search_window(conn, filters, window).window
    queries.tiles(conn, filters, window, window.until)
    stats.time_series(conn, filters, window, "day", ZoneInfo("UTC"))
    for dim in ("error_class", "event_type", "webhook_id"):
        queries.failures_by(conn, filters, window, dim)
    queries.failures_by_status(conn, filters, window)
    queries.webhook_health(conn, filters, window)


def common_search(bench: Bench) -> list[Row]:
    """A word every row holds: the Deliveries count and first page, and every query of the Overview."""
    rows = []
    for name, call, target in (
        ("count (capped)", lambda c, f, w: queries.count_deliveries(c, f, w), None),
        ("first page", lambda c, f, w: queries.delivery_page(c, f, w, limit=50), None),
        ("Overview queries", _overview_queries, 2.0),
    ):
        def measure(conn, end, call=call):
            filters, window = _window(end)
            view = filters.with_changes(search=COMMON_WORD)
            return median_time(lambda: call(conn, view, window), max(1, bench.repeat // 2))

        small, large = _on_both(bench, measure)
        rows.append(Row(f"common word, 30 days, {bench.large_rows:,} rows: {name}", _ms(large),
                        f"{_ms(small)} at {bench.small_rows:,}", f"{large / small:.2f}x",
                        "< 2 s (in Chromium: see below)" if target else "flat", large < target if target else None))
    return rows


def failures_by_status(bench: Bench) -> list[Row]:
    """Failures by response status over 30 days, the two archives measured alternately (warm-up included), so a
    page cache left cold by building one of them weighs on neither."""
    opened = []
    for rows in (bench.small_rows, bench.large_rows):
        path, end = bench.archive(rows)
        opened.append(archive.connect(path, readonly=True))
    filters, window = _window(end)
    try:
        small, large = side_by_side(lambda: queries.failures_by_status(opened[0], filters, window),
                                    lambda: queries.failures_by_status(opened[1], filters, window), max(bench.repeat, 41))
    finally:
        for conn in opened:
            conn.close()
    return [Row("failures_by_status, 30 days", _ms(large), f"{_ms(small)} at {bench.small_rows:,}",
                f"{large / small:.2f}x", "<= 1.3x", large / small <= 1.3)]


def overview_queries(bench: Bench) -> list[Row]:
    def measure(conn, end):
        filters, window = _window(end)
        return median_time(lambda: _overview_queries(conn, filters, window), max(1, bench.repeat // 2))

    small, large = _on_both(bench, measure)
    return [Row("Overview's queries uncached, 30 days", _ms(large), f"{_ms(small)} at {bench.small_rows:,}",
                f"{large / small:.2f}x", "flat", None)]


def year_window(bench: Bench) -> list[Row]:
    """Every Overview query over a 365-day window, uncached, alternately: with the daily rollup (schema 15: whole days
    read a row per day and group) and through the hours alone, as an archive before it reads (the same file, with
    ``delivery_daily`` dropped inside a transaction that is rolled back: the file is never changed)."""
    rows = 100_000 if bench.quick else 3_000_000
    path, end = cached_archive(rows, days=365, log=lambda line: print(f"  ({line})", flush=True))
    filters = Filters(time_range="custom", since=end - timedelta(days=365, minutes=17), until=end - timedelta(minutes=17))
    window = filters.window(end)
    daily = archive.connect(path, readonly=True)
    hours = archive.connect(path)
    try:
        hours.execute("BEGIN IMMEDIATE")
        hours.execute("DROP TABLE delivery_daily")
        product, baseline = side_by_side(lambda: _overview_queries(daily, filters, window),
                                         lambda: _overview_queries(hours, filters, window), max(3, bench.repeat))
    finally:
        if hours.in_transaction:
            hours.execute("ROLLBACK")
        hours.close()
        daily.close()
    return [Row(f"Overview's queries uncached, 365 days, {rows:,} rows over a year: the daily rollup vs the hours",
                _ms(product), f"{_ms(baseline)} from the hours", f"{product / baseline:.2f}x", "-", None)]


ROWS = [rare_search, common_search, failures_by_status, overview_queries, year_window]
