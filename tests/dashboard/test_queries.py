"""Queries against a seeded archive: exact counts, percentiles within a bucket, filters, search, pages."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from collectors import archive
from collectors.archive import writer
from collectors.archive import LATENCY_BUCKET_BOUNDS_MS, error_class
from collectors.models import Webhook
from dashboard import coverage, queries
from collectors.archive.filters import Filters, Window
from dashboard.stats import aggregate, percentile_from_histogram, summary, time_series

from tests.seed import ALPHA, BETA, GAMMA, NOW, Seed, delivery

DAY = Filters()


def window(hours: float = 24) -> Window:
    return Filters().window(NOW) if hours == 24 else Window(Filters().window(NOW).until - timedelta(hours=hours),
                                                            Filters().window(NOW).until)


def bucket_of(ms: float) -> int:
    """Index of the latency bucket holding ``ms``."""
    for i, upper in enumerate(LATENCY_BUCKET_BOUNDS_MS):
        if ms <= upper:
            return i
    return len(LATENCY_BUCKET_BOUNDS_MS)


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def test_summary_counts_are_exact(conn: sqlite3.Connection, seeded: Seed) -> None:
    w = window()
    expected = seeded.in_window(w.since, w.until)
    got = summary(conn, DAY, w)
    assert got.deliveries == len(expected) == 53
    assert got.successes == sum(d.success for d in expected) == 39
    assert got.failures == 14
    assert got.success_rate == pytest.approx(39 / 53)


def test_previous_window_and_old_archive_are_reachable(conn: sqlite3.Connection) -> None:
    w = window()
    assert summary(conn, DAY, w.previous()).deliveries == 20
    old = Filters(time_range="custom", since=NOW - timedelta(days=21), until=NOW - timedelta(days=19))
    assert summary(conn, old, old.window(NOW)).deliveries == 5


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_percentiles_fall_in_the_exact_values_bucket(conn: sqlite3.Connection, seeded: Seed, q: float) -> None:
    w = window()
    durations = [d.duration_ms for d in seeded.in_window(w.since, w.until)]
    estimate = getattr(summary(conn, DAY, w), f"p{round(q * 100)}_ms")
    assert bucket_of(estimate) == bucket_of(nearest_rank(durations, q))


def test_rollup_with_edge_rows_equals_the_raw_rows(conn: sqlite3.Connection) -> None:
    """A window not aligned on hours: rollup (inner hours) + raw edges must equal a raw-only count."""
    w = Window(NOW - timedelta(hours=19, minutes=17), NOW - timedelta(minutes=3))
    hybrid = aggregate(conn, DAY, w, dims=("webhook_id", "success"))
    direct = conn.execute(
        "SELECT webhook_id, success, COUNT(*) FROM deliveries WHERE delivered_at >= ? AND delivered_at < ? "
        "GROUP BY webhook_id, success ORDER BY webhook_id, success", (w.since_text, w.until_text),
    ).fetchall()
    got = sorted((r.webhook_id, int(r.success), int(r.deliveries)) for r in hybrid.itertuples())
    assert got == [tuple(r) for r in direct]


def test_hour_and_day_figures_come_from_the_rollup(seeded: Seed) -> None:
    """Inflate one whole hour of the rollup: hourly figures follow it, minute buckets (raw rows) do not."""
    from collectors import archive

    db = archive.connect(seeded.path)
    hour = (NOW - timedelta(hours=5)).strftime("%Y-%m-%dT%H")
    db.execute("UPDATE delivery_hourly SET deliveries = deliveries + 1000, h04 = h04 + 1000 WHERE hour = ?", (hour,))
    w = window()
    assert summary(db, DAY, w).deliveries == 53 + 1000 * db.execute(
        "SELECT COUNT(*) FROM delivery_hourly WHERE hour = ?", (hour,)).fetchone()[0]
    minutes = time_series(db, DAY, window(hours=6), "minute", ZoneInfo("UTC"))
    assert int(minutes["deliveries"].sum()) < 1000
    db.close()


def test_filters_narrow_exactly(conn: sqlite3.Connection, seeded: Seed) -> None:
    w = window()
    rows = seeded.in_window(w.since, w.until)
    assert summary(conn, DAY.with_changes(outcome="failed"), w).deliveries == sum(not d.success for d in rows)
    assert summary(conn, DAY.with_changes(webhooks=(BETA,)), w).deliveries == 10
    assert summary(conn, DAY.with_changes(status_classes=("4xx",)), w).deliveries == 1
    assert summary(conn, DAY.with_changes(status_classes=("none",)), w).deliveries == 1
    customers = sum(d.event_type == "CUSTOMER_CREATED" for d in rows)
    assert summary(conn, DAY.with_changes(event_types=("CUSTOMER_CREATED",)), w).deliveries == customers == 10


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("Lovelace", {"dlv_a07"}),                 # words in the request body, via deliveries_fts
        ("ada LOVELACE", {"dlv_a07"}),             # every word, any case
        ("dlv_b03", {"dlv_b03"}),                  # an exact delivery id
        ("evt_retry", {"dlv_r1", "dlv_r2", "dlv_r3"}),  # an exact event id
        ("bad gateway", {"dlv_r1", "dlv_r2"}),     # words in the error
        ('" OR NEAR( -x *', set()),                # FTS5 syntax is searched for, never parsed
    ],
)
def test_search_box(conn: sqlite3.Connection, text: str, ids: set[str]) -> None:
    f = DAY.with_changes(search=text)
    page = queries.delivery_page(conn, f, window(), limit=100)
    assert set(page.rows["id"]) == ids
    assert queries.count_deliveries(conn, f, window()) == queries.Count(len(ids), True)


def _steps(conn: sqlite3.Connection, run) -> int:
    """How much work SQLite does for ``run()``: virtual-machine steps (in units of 100), nested FTS5 reads included."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        run()
    finally:
        conn.set_progress_handler(None, 0)
    return steps


def _add_old_matches(path: Path, first: int, count: int) -> None:
    """``count`` deliveries mentioning "needle", 20 days before the window, archived after its rows (later rowids)."""
    db = archive.connect(path)
    old = [delivery(f"dlv_n{first + i:05d}", BETA, NOW - timedelta(days=20, seconds=first + i),
                    error="needle in the haystack") for i in range(count)]
    with archive.transaction(db):
        writer.save_deliveries(db, old, seen_at=NOW)
    db.close()


def test_search_costs_what_the_window_holds_not_the_archive(seeded: Seed) -> None:
    """A word common in the archive but rare in the window: the search's work must not grow with the archive."""
    db = archive.connect(seeded.path)
    with archive.transaction(db):
        writer.save_deliveries(db, [delivery(f"dlv_w{k}", ALPHA, NOW - timedelta(hours=k), error="needle here")
                                   for k in (2, 3, 4)], seen_at=NOW)
    db.close()
    view = DAY.with_changes(search="needle")

    def cost() -> tuple[int, set[str]]:
        conn = archive.connect(seeded.path, readonly=True)
        try:
            found: set[str] = set()

            def run() -> None:
                assert queries.count_deliveries(conn, view, window()) == queries.Count(3, True)
                found.update(queries.delivery_page(conn, view, window(), limit=50).rows["id"])
                assert summary(conn, view, window()).deliveries == 3

            return _steps(conn, run), found
        finally:
            conn.close()

    _add_old_matches(seeded.path, 0, 1_000)
    small, found = cost()
    _add_old_matches(seeded.path, 1_000, 4_000)
    large, found_again = cost()
    assert found == found_again == {"dlv_w2", "dlv_w3", "dlv_w4"}
    assert large <= small * 1.25, f"{small} -> {large} steps for 4,000 more matches outside the window"


def test_search_is_exact_when_rows_of_other_days_sit_among_the_windows_rows(conn: sqlite3.Connection) -> None:
    """The previous day's rows were archived in the same batch as the window's: their words stay out of the view."""
    assert queries.delivery_page(conn, DAY.with_changes(search="dlv_p05"), window()).rows.empty
    before = Window(window().since - timedelta(days=1), window().since)
    assert list(queries.delivery_page(conn, DAY.with_changes(search="dlv_p05"), before).rows["id"]) == ["dlv_p05"]


def test_search_count_stops_at_its_cap(conn: sqlite3.Connection) -> None:
    count = queries.count_deliveries(conn, DAY.with_changes(search="endpoint"), window(), cap=5)
    assert count == queries.Count(5, False)
    assert str(count) == "5+"


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_keyset_pages_cover_the_view_once_in_order(conn: sqlite3.Connection, seeded: Seed, order: str) -> None:
    w = window()
    expected = sorted(seeded.in_window(w.since, w.until), key=lambda d: (d.delivered_at, d.id), reverse=order == "newest")
    seen, cursor, pages = [], None, 0
    while True:
        page = queries.delivery_page(conn, DAY, w, after=cursor, order=order, limit=7)
        assert len(page.rows) <= 7
        seen.extend(page.rows["id"])
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    assert seen == [d.id for d in expected]
    assert pages == math.ceil(53 / 7)


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_pages_over_several_webhooks_merge_in_order(conn: sqlite3.Connection, seeded: Seed, order: str) -> None:
    """Several webhooks are read one index range each and merged: same rows, same order, no repeats."""
    w = window()
    f = DAY.with_changes(webhooks=(ALPHA, BETA), outcome="failed")
    expected = sorted((d for d in seeded.in_window(w.since, w.until) if not d.success),
                      key=lambda d: (d.delivered_at, d.id), reverse=order == "newest")
    seen, cursor = [], None
    while True:
        page = queries.delivery_page(conn, f, w, after=cursor, order=order, limit=4)
        seen.extend(page.rows["id"])
        if page.next is None:
            break
        cursor = page.next
    assert seen == [d.id for d in expected] and len(seen) == 14


def test_page_columns_and_types(conn: sqlite3.Connection) -> None:
    page = queries.delivery_page(conn, DAY, window(), limit=3)
    assert list(page.rows.columns) == list(queries.LIST_COLUMNS)
    first = page.rows.iloc[0]
    assert first["id"] == "dlv_a01" and not first["success"] and first["error_class"] == "timeout"
    assert str(page.rows["delivered_at"].dt.tz) == "UTC"


def test_failures_by_class_status_and_webhook(conn: sqlite3.Connection, seeded: Seed) -> None:
    w = window()
    failed = [d for d in seeded.in_window(w.since, w.until) if not d.success]
    by_class = queries.failures_by(conn, DAY, w, "error_class")
    assert dict(zip(by_class["error_class"], by_class["failures"])) == Counter(
        error_class(False, d.response_status, d.error) for d in failed)
    assert list(by_class["failures"]) == sorted(by_class["failures"], reverse=True)
    by_status = queries.failures_by_status(conn, DAY, w)
    assert dict(zip(by_status["response_status"], by_status["failures"])) == Counter(d.response_status for d in failed)
    by_hook = queries.failures_by(conn, DAY, w, "webhook_id")
    assert dict(zip(by_hook["webhook_id"], by_hook["failures"])) == {ALPHA: 6, BETA: 8}
    with pytest.raises(ValueError):
        queries.failures_by(conn, DAY, w, "request_body")


def test_time_series_buckets_sum_to_the_summary(conn: sqlite3.Connection) -> None:
    w = window()
    series = time_series(conn, DAY, w, "hour", ZoneInfo("Asia/Kolkata"))
    assert len(series) == 25  # 24 h not aligned on the hour touch 25 hours
    assert int(series["deliveries"].sum()) == 53 and int(series["failures"].sum()) == 14
    assert str(series["time"].dt.tz) == "Asia/Kolkata"
    empty = series[series["deliveries"] == 0]
    assert empty["success_rate"].isna().all() and empty["p95_ms"].isna().all()


def test_minute_series_reads_raw_rows(conn: sqlite3.Connection, seeded: Seed) -> None:
    w = window(hours=3)
    series = time_series(conn, DAY, w, "minute", ZoneInfo("UTC"))
    assert len(series) == 180
    assert int(series["deliveries"].sum()) == len(seeded.in_window(w.since, w.until))
    busiest = series.loc[series["deliveries"].idxmax()]
    assert busiest["time"].second == 0


def test_day_series_uses_local_days(conn: sqlite3.Connection) -> None:
    f = Filters(time_range="30d")
    series = time_series(conn, f, f.window(NOW), "day", ZoneInfo("America/New_York"))
    assert int(series["deliveries"].sum()) == 53 + 20 + 5
    assert all(t.hour == 0 for t in series["time"])


def test_webhook_health(conn: sqlite3.Connection) -> None:
    health = queries.webhook_health(conn, DAY, window()).set_index("webhook_id")
    assert list(health.index) == [BETA, ALPHA, GAMMA]  # failing first, inactive last
    beta, alpha, gamma = health.loc[BETA], health.loc[ALPHA], health.loc[GAMMA]
    assert (beta["state"], beta["consecutive_failures"], beta["deliveries"]) == ("failing", 8, 10)
    assert beta["last_success"] == (NOW - timedelta(minutes=45 * 9))
    assert (alpha["state"], alpha["consecutive_failures"]) == ("degraded", 4)
    assert alpha["last_failure"] == NOW - timedelta(minutes=30)
    assert alpha["success_rate"] == pytest.approx(37 / 43)
    assert gamma["state"] == "inactive" and gamma["deliveries"] == 0


def test_health_describes_the_webhook_whatever_the_outcome_and_status_filters(conn: sqlite3.Connection) -> None:
    every = queries.webhook_health(conn, DAY, window()).set_index("webhook_id")
    for view in (DAY.with_changes(outcome="failed"), DAY.with_changes(status_classes=("5xx",)),
                 DAY.with_changes(outcome="success", status_classes=("2xx",)), DAY.with_changes(search="bad gateway")):
        health = queries.webhook_health(conn, view, window()).set_index("webhook_id")
        assert health.loc[ALPHA, "state"] == "degraded" and health.loc[ALPHA, "success_rate"] == pytest.approx(37 / 43)
        assert health.loc[BETA, "state"] == "failing" and health.loc[BETA, "success_rate"] == pytest.approx(2 / 10)
        assert health[["state", "deliveries", "success_rate", "p95_ms"]].equals(every[["state", "deliveries", "success_rate", "p95_ms"]])
    # The webhook and event-type filters still narrow it.
    appointments = queries.webhook_health(conn, DAY.with_changes(event_types=("CUSTOMER_CREATED",)), window())
    assert appointments.set_index("webhook_id").loc[ALPHA, "deliveries"] == 10


def test_a_95_percent_healthy_webhook_does_not_read_failing_in_a_view_of_failures(tmp_path: Path) -> None:
    db = archive.connect(tmp_path / "one.db")
    archive.ensure_db_shape(db)
    hook = Webhook(id="wh_ok", endpoint_url="https://receiver.example/ok", event_types=["PET_CREATED"], is_active=True)
    rows = [delivery(f"d{k:02d}", "wh_ok", NOW - timedelta(minutes=30 * k), success=k != 20, status=200 if k != 20 else 500)
            for k in range(1, 21)]  # 19 of 20 succeeded; the one failure is the oldest
    with archive.transaction(db):
        writer.save_webhooks(db, [hook], seen_at=NOW)
        writer.save_deliveries(db, rows, seen_at=NOW)
    health = queries.webhook_health(db, DAY.with_changes(outcome="failed"), window())
    db.close()
    row = health.set_index("webhook_id").loc["wh_ok"]
    assert (row["state"], row["success_rate"], row["deliveries"]) == ("degraded", pytest.approx(0.95), 20)


def test_last_outcomes_and_the_streak_read_the_outcome_index(conn: sqlite3.Connection) -> None:
    """Every per-webhook lookup of the health table is a seek (or a failures-only range) on the outcome index
    (covering for the streak; the latest entry reads its one row for the time as text).

    So a webhook that never failed costs one seek to learn it, however many deliveries it has.
    """
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        health = queries.webhook_health(conn, DAY, window()).set_index("webhook_id")
    finally:
        conn.set_trace_callback(None)
    lookups = [sql for sql in statements if "FROM deliveries WHERE webhook_id" in sql]
    # Last success and last failure of each of the 3 webhooks, and the streak of the 2 that failed.
    assert len(lookups) == 3 * 2 + 2
    for sql in lookups:
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "INDEX deliveries_by_webhook_outcome_time (webhook_id=? AND success=? AND delivered_key" \
            in plan, (sql, plan)
    assert health.loc[BETA, "consecutive_failures"] == 8 and pd.isna(health.loc[GAMMA, "last_failure"])


@pytest.mark.parametrize(
    ("kwargs", "state"),
    [
        (dict(active=False, deliveries=10, success_rate=1.0, p95_ms=10.0, consecutive_failures=0), "inactive"),
        (dict(active=True, deliveries=0, success_rate=None, p95_ms=None, consecutive_failures=0), "inactive"),
        (dict(active=True, deliveries=100, success_rate=0.99, p95_ms=200.0, consecutive_failures=5), "failing"),
        (dict(active=True, deliveries=100, success_rate=0.4, p95_ms=200.0, consecutive_failures=0), "failing"),
        (dict(active=True, deliveries=100, success_rate=1.0, p95_ms=12_000.0, consecutive_failures=0), "degraded"),
        (dict(active=True, deliveries=100, success_rate=1.0, p95_ms=200.0, consecutive_failures=1), "degraded"),
        (dict(active=True, deliveries=100, success_rate=0.999, p95_ms=200.0, consecutive_failures=0), "healthy"),
    ],
)
def test_health_state_rules(kwargs: dict, state: str) -> None:
    assert queries.health_state(**kwargs) == state


def test_tiles_compare_with_the_previous_period(conn: sqlite3.Connection) -> None:
    t = queries.tiles(conn, DAY, window(), NOW)
    assert (t.current.deliveries, t.previous.deliveries) == (53, 20)
    assert (t.redeliveries, t.previous_redeliveries) == (1, 0)
    assert queries.redelivery_count(conn, DAY.with_changes(webhooks=(BETA,)), window()) == 0


def test_at_risk_from_coverage(conn: sqlite3.Connection) -> None:
    risk = coverage.at_risk(conn, NOW)
    gaps = {r.webhook_id: r for r in risk.gaps.itertuples()}
    assert risk.gap_hours == pytest.approx(12 + 48 + 48)
    assert gaps[ALPHA].hours == pytest.approx(12)
    assert gaps[ALPHA].start == NOW - timedelta(days=14, hours=12)
    assert gaps[BETA].start == NOW - timedelta(days=15)
    assert gaps[ALPHA].estimated_entries > 0 and gaps[BETA].estimated_entries > 0
    assert gaps[GAMMA].estimated_entries == 0  # never covered, so no rate to estimate from
    assert risk.estimated_entries == sum(g.estimated_entries for g in gaps.values())
    only_alpha = coverage.at_risk(conn, NOW, webhook_ids=[ALPHA])
    assert list(only_alpha.gaps["webhook_id"]) == [ALPHA]


def test_coverage_gaps_split_at_the_retention_start(conn: sqlite3.Connection) -> None:
    gaps = coverage.coverage_gaps(conn, NOW - timedelta(days=30), NOW, now=NOW, webhook_ids=[BETA])
    spans = [(g.start, g.end, g.kind) for g in gaps.itertuples()]
    assert spans == [
        (NOW - timedelta(days=30), NOW - timedelta(days=15), "expired"),
        (NOW - timedelta(days=15), NOW - timedelta(days=10), "open"),
        (NOW - timedelta(hours=1), NOW, "pending"),  # since the last collection
    ]
    never = coverage.coverage_gaps(conn, NOW - timedelta(days=3), NOW, now=NOW, webhook_ids=[GAMMA])
    assert list(never["kind"]) == ["open"]  # never collected at all is a hole, not "pending"


def test_detail_attempts_and_audit(conn: sqlite3.Connection) -> None:
    record = queries.delivery(conn, "dlv_r2")
    assert record is not None and record["success"] is False and record["response_status"] == 502
    assert record["request_headers"]["X-Moe-Signature-256"] == ["[redacted]"]
    assert queries.delivery(conn, "nope") is None
    attempts = queries.event_attempts(conn, "evt_retry")
    assert list(attempts["id"]) == ["dlv_r1", "dlv_r2", "dlv_r3"]
    assert list(attempts["success"]) == [False, False, True]
    audit = queries.redeliveries_of(conn, "dlv_a03")
    assert list(audit["outcome"]) == ["sent"] and list(audit["new_delivery_id"]) == ["dlv_new"]


def test_reference_data(conn: sqlite3.Connection) -> None:
    options = queries.filter_options(conn, NOW - timedelta(days=31))
    assert options.webhooks == (ALPHA, BETA, GAMMA)
    assert "PET_DELETED" in options.event_types and "CUSTOMER_CREATED" in options.event_types
    hooks = queries.webhooks(conn).set_index("id")
    assert hooks.loc[ALPHA, "has_secret"] and len(hooks.loc[ALPHA, "secret_fingerprint"]) == 8
    assert hooks.loc[ALPHA, "headers"] == {"X-Api-Key": ["[redacted]"]}
    assert not hooks.loc[GAMMA, "is_active"]
    runs = queries.collector_runs(conn)
    assert list(runs["outcome"]) == ["ok", "failed"]


def test_percentile_interpolation() -> None:
    counts = [0] * 22
    counts[4] = 10  # ten durations in (75, 100]
    assert percentile_from_histogram(counts, 0.5) == pytest.approx(87.5)
    assert percentile_from_histogram(counts, 0.5, max_ms=80) == pytest.approx(77.5)  # capped by the largest
    counts[21] = 10  # ten more over 30 s
    assert percentile_from_histogram(counts, 0.99, max_ms=40_000) == pytest.approx(30_000 + 0.98 * 10_000)
    assert percentile_from_histogram([0] * 22, 0.5) is None
    with pytest.raises(ValueError):
        percentile_from_histogram(counts, 1.5)
