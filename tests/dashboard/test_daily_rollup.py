"""Totals and breakdowns over several days: whole days from the daily rollup, the same numbers as the raw rows.

What a user checks: the Overview's tiles, its failures by error class / event type / webhook and the webhook
health table of any window (whole days, the hours around them, partial hours at both ends; filtered) say what
counting the deliveries one by one says, also after MoeGo rewrote some of them; a year-long window reads a
row per day and group instead of one per hour; and an archive of the schema before the daily rollup reads the
same numbers meanwhile and gains it, filled from its hours, when the collector next starts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collectors import archive
from collectors.archive import HISTOGRAM_COLUMNS, histogram_sql, writer
from collectors.archive.filters import Filters, Window
from collectors.archive.rollups import migrate_add_daily
from dashboard import queries, stats

from tests.collectors.conftest import assert_archive_consistent
from tests.dashboard.test_failures_by_day import FILTERS, NOW, WINDOWS, _deliveries, build_days, raw_where
from tests.seed import ALPHA

@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The days of the failures-by-status tests: 900 deliveries over four and a half days, 60 of them rewritten."""
    return build_days(tmp_path_factory.mktemp("daily") / "days.db")


DIMS = [(), ("webhook_id", "success"), ("event_type",), ("error_class", "success"), ("status_class",)]
_MEASURES = ("deliveries", "successes", "retries", "duration_sum", "duration_max", *HISTOGRAM_COLUMNS)


def _raw(conn, filters: Filters, window: Window, dims: tuple[str, ...]) -> dict[tuple, tuple[int, ...]]:
    """The measures per group, counted from the raw rows one by one (the definition the rollups must equal)."""
    where, params = raw_where(filters, window)
    sql = (f"SELECT {''.join(d + ', ' for d in dims)}COUNT(*), SUM(success), SUM(retry_count), SUM(duration_ms), "
           f"MAX(duration_ms), {histogram_sql()} FROM deliveries WHERE {where}")
    if filters.outcome != "all":
        sql += f" AND success = {int(filters.outcome == 'success')}"
    if dims:
        sql += f" GROUP BY {', '.join(dims)}"
    rows = conn.execute(sql, params).fetchall()
    return {tuple(r[: len(dims)]): tuple(r[len(dims):]) for r in rows if r[len(dims)]}


def _got(frame, dims: tuple[str, ...]) -> dict[tuple, tuple[int, ...]]:
    return {tuple(r[d] for d in dims): tuple(int(r[m]) for m in _MEASURES) for _, r in frame.iterrows()}


def test_every_window_filter_and_breakdown_says_what_the_raw_rows_say(days: Path) -> None:
    assert_archive_consistent(days)  # delivery_daily included, after the rewrite
    conn = archive.connect(days, readonly=True)
    for window in WINDOWS:
        for filters in FILTERS:
            for dims in DIMS:
                expected = _raw(conn, filters, window, dims)
                assert _got(stats.aggregate(conn, filters, window, dims=dims), dims) == expected, (window, filters, dims)
            expected = _raw(conn, filters, window, ())
            assert expected or filters.outcome == "failed"
            total = stats.summary(conn, filters, window)
            deliveries, successes = expected.get((), (0, 0))[:2]
            assert (total.deliveries, total.successes) == (deliveries, successes), (window, filters)
            # What the Overview's Failures tab shows: failed deliveries per error class, as counted row by row.
            by_class = queries.failures_by(conn, filters, window, "error_class")
            failed = {key[0]: m[0] for key, m in _raw(conn, filters.with_changes(outcome="failed"), window,
                                                      ("error_class",)).items()}
            assert dict(zip(by_class["error_class"], by_class["failures"])) == failed, (window, filters)
    conn.close()


ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/London"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"),
         ZoneInfo("Asia/Kathmandu"), ZoneInfo("America/St_Johns")]


def _per_local_day(conn, window: Window, tz: ZoneInfo, webhook: str = "") -> dict[str, tuple[int, int]]:
    """(deliveries, successes) per calendar day of ``tz`` (of ``webhook`` when given), counted row by row."""
    out: dict[str, list[int]] = {}
    for at, ok in conn.execute("SELECT delivered_at, success FROM deliveries WHERE delivered_at >= ? AND delivered_at < ?"
                               " AND (? = '' OR webhook_id = ?)", (window.since_text, window.until_text, webhook, webhook)):
        day = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(tz).date().isoformat()
        counts = out.setdefault(day, [0, 0])
        counts[0] += 1
        counts[1] += ok
    return {day: (n, ok) for day, (n, ok) in out.items()}


def test_a_daily_chart_in_any_zone_counts_each_calendar_day_of_that_zone(days: Path) -> None:
    """Day buckets of UTC (and of London in November, UTC+0) come from the daily rollup, those of other zones from
    the hours: each bucket holds exactly the deliveries of that zone's calendar day."""
    conn = archive.connect(days, readonly=True)
    for tz in ZONES:
        # A custom range of whole local days (what the sidebar's date pickers give): it starts at a local midnight.
        midnight = datetime(2026, 11, 17, tzinfo=tz)
        for window in (*WINDOWS, Window(midnight, midnight + timedelta(days=2))):
            series = stats.time_series(conn, Filters(), window, "day", tz)
            got = {t.date().isoformat(): (int(n), int(ok)) for t, n, ok in
                   zip(series["time"], series["deliveries"], series["successes"]) if n}
            assert got == _per_local_day(conn, window, tz), (window, tz)
            assert all(t.hour == 0 and t.minute == 0 for t in series["time"])
            alpha = stats.time_series(conn, Filters(webhooks=(ALPHA,)), window, "day", tz)
            assert {t.date().isoformat(): (int(n), int(ok)) for t, n, ok in
                    zip(alpha["time"], alpha["deliveries"], alpha["successes"]) if n} == _per_local_day(
                        conn, window, tz, ALPHA), (window, tz)
    conn.close()


def test_whole_days_are_read_from_the_daily_rollup(days: Path, tmp_path: Path) -> None:
    """Inflate one day of the daily rollup: a window holding that whole day follows it, one holding part of it does not
    (its hours come from the hourly rollup), and an hourly time series never reads it."""
    path = tmp_path / "copy.db"
    path.write_bytes(days.read_bytes())
    db = archive.connect(path)
    with archive.transaction(db):
        db.execute("UPDATE delivery_daily SET deliveries = deliveries + 1000 WHERE day = '2026-11-18' AND webhook_id = ?",
                   (ALPHA,))
        inflated = db.execute("SELECT COUNT(*) FROM delivery_daily WHERE day = '2026-11-18' AND webhook_id = ?",
                              (ALPHA,)).fetchone()[0]
    assert inflated > 0
    whole, part = WINDOWS[1], Window(datetime(2026, 11, 18, 1, tzinfo=timezone.utc), NOW)
    assert stats.summary(db, Filters(), whole).deliveries == _raw(db, Filters(), whole, ())[()][0] + 1000 * inflated
    assert stats.summary(db, Filters(), part).deliveries == _raw(db, Filters(), part, ())[()][0]
    series = stats.time_series(db, Filters(), whole, "hour", timezone.utc)
    assert int(series["deliveries"].sum()) == _raw(db, Filters(), whole, ())[()][0]
    by_day = {t.date().isoformat(): int(n) for t, n in
              zip(*(lambda f: (f["time"], f["deliveries"]))(stats.time_series(db, Filters(), whole, "day", ZoneInfo("UTC"))))}
    assert by_day["2026-11-18"] == _per_local_day(db, whole, ZoneInfo("UTC"))["2026-11-18"][0] + 1000 * inflated
    kolkata = stats.time_series(db, Filters(), whole, "day", ZoneInfo("Asia/Kolkata"))
    assert int(kolkata["deliveries"].sum()) == _raw(db, Filters(), whole, ())[()][0]  # its days are read from hours
    db.close()


def test_a_year_long_window_reads_days_not_hours(days: Path) -> None:
    """The plan of a year's totals: the daily rollup's key for the days, the hourly one's only for the hours around
    them (at most 46), never a scan of either table."""
    conn = archive.connect(days, readonly=True)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    window = Window(NOW - timedelta(days=365, minutes=17), NOW - timedelta(minutes=17))
    stats.aggregate(conn, Filters(), window, dims=("webhook_id", "success"))
    conn.set_trace_callback(None)
    reads = [s for s in statements if "FROM delivery_" in s]
    assert any("FROM delivery_daily" in s for s in reads), reads
    for sql in reads:
        plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SEARCH" in plan and "SCAN delivery_" not in plan, (sql, plan)
    hours = [s for s in reads if "FROM delivery_hourly" in s]
    assert len(hours) <= 2 and all("hour >= '" in s for s in hours), hours
    conn.close()


def test_an_archive_before_the_daily_rollup_reads_the_same_and_gains_it_on_the_next_start(days: Path,
                                                                                        tmp_path: Path) -> None:
    """An archive of schema 14 (before ``delivery_daily``) reads the same numbers from its hours, the writer keeps
    writing it without the table, and the collector's next start adds the table filled from the hours."""
    path = tmp_path / "before.db"
    path.write_bytes(days.read_bytes())
    step = archive.schema._MIGRATIONS.index(migrate_add_daily)
    db = archive.connect(path)
    with archive.transaction(db):
        db.execute("DROP TABLE delivery_daily")
        db.execute(f"PRAGMA user_version = {step}")
    before = {(w, f, d): _raw(db, f, w, d) for w in WINDOWS for f in FILTERS for d in DIMS}
    archive.check_readable(path)  # the dashboard opens it as it is
    for (window, filters, dims), expected in before.items():
        assert _got(stats.aggregate(db, filters, window, dims=dims), dims) == expected
    later = [replace(d, id=f"dlv_late{i:03d}", delivered_at=d.delivered_at - timedelta(days=2))
             for i, d in enumerate(_deliveries(150))]
    with archive.transaction(db):
        assert writer.save_deliveries(db, later, seen_at=NOW).new == 150
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'delivery_daily'").fetchone() == (0,)
    archive.ensure_db_shape(db)  # what the collector does when it starts
    assert archive.schema_version(db) == archive.SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM delivery_daily").fetchone()[0] > 0
    db.close()
    assert_archive_consistent(path)
    db = archive.connect(path, readonly=True)
    for window in WINDOWS:
        for filters in FILTERS:
            for dims in DIMS:
                assert _got(stats.aggregate(db, filters, window, dims=dims), dims) == _raw(db, filters, window, dims)
    db.close()
    with archive.open_archive(path) as conn, archive.transaction(conn):
        migrate_add_daily(conn)  # safe to run again
    assert_archive_consistent(path)
