"""Search over many rows: the same rows whichever plan reads them, a cost that follows the page, capped counts."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from collectors import archive
from collectors.archive import search_plan, writer
from collectors.archive.filters import Filters, Window
from collectors.archive.where import deliveries_where
from dashboard import queries
from dashboard.stats import summary

from tests.collectors.conftest import assert_archive_consistent
from tests.seed import ALPHA, BETA, NOW, delivery

WINDOW = Window(NOW - timedelta(hours=24), NOW)
RARE = {"dlv_c00100", "dlv_c01500", "dlv_c02900"}


def _write(path: Path, first: int, count: int, *, hours: float = 20) -> None:
    """``count`` deliveries spread over the ``hours`` before NOW, every one saying "parcel", three "zebra"."""
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    step = timedelta(hours=hours) / count
    page = []
    for i in range(first, first + count):
        word = "zebra parcel" if f"dlv_c{i:05d}" in RARE else "parcel"
        page.append(delivery(f"dlv_c{i:05d}", (ALPHA, BETA)[i % 2], NOW - step * (i - first) - timedelta(minutes=1),
                             success=i % 7 != 0, status=200 if i % 7 else 503, error="" if i % 7 else f"{word} lost",
                             request_body=f'{{"note":"{word} number {i}"}}'.encode()))
        if len(page) == 500:
            with archive.transaction(db):
                writer.save_deliveries(db, page, seen_at=NOW)
            page = []
    if page:
        with archive.transaction(db):
            writer.save_deliveries(db, page, seen_at=NOW)
    db.close()


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("search") / "many.db"
    _write(path, 0, 3_000)
    return path


def _steps(conn: sqlite3.Connection, run) -> int:
    """SQLite's virtual-machine steps (in hundreds) for ``run()``, FTS5's reads included."""
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


def _ids(conn: sqlite3.Connection, filters: Filters, plan: str) -> list[str]:
    where = deliveries_where(filters, WINDOW.since_text, WINDOW.until_text, search=plan)  # type: ignore[arg-type]
    return [r[0] for r in conn.execute(f"SELECT id FROM deliveries WHERE {where.sql} ORDER BY delivered_at DESC, id DESC",
                                       where.params)]


@pytest.mark.parametrize(("word", "plan", "expected"), [("zebra", "candidates", 3), ("parcel", "membership", 3_000)])
def test_a_rare_word_reads_its_matches_and_a_common_word_walks_the_time_index(many: Path, word: str, plan: str,
                                                                              expected: int) -> None:
    conn = archive.connect(many, readonly=True)
    view = Filters().with_changes(search=word)
    assert search_plan.choose_plan(conn, view, WINDOW.since_text, WINDOW.until_text) == plan
    both = {p: _ids(conn, view, p) for p in ("candidates", "membership")}
    assert both["candidates"] == both["membership"] and len(both[plan]) == expected
    page = queries.delivery_page(conn, view, WINDOW, limit=50)
    assert list(page.rows["id"]) == both[plan][:50]
    failed = view.with_changes(outcome="failed", webhooks=(BETA,))
    assert list(queries.delivery_page(conn, failed, WINDOW, limit=50).rows["id"]) == _ids(conn, failed, "candidates")[:50]
    conn.close()


def test_counts_stop_at_the_cap_and_say_so(many: Path) -> None:
    conn = archive.connect(many, readonly=True)
    assert search_plan.COUNT_CAP == 10_000
    common = queries.count_deliveries(conn, Filters(search="parcel"), WINDOW)
    assert common == queries.Count(3_000, True)
    capped = queries.count_deliveries(conn, Filters(search="parcel"), WINDOW, cap=1_000)
    assert capped == queries.Count(1_000, False) and str(capped) == "1,000+"
    assert queries.count_deliveries(conn, Filters(search="zebra"), WINDOW) == queries.Count(3, True)
    # A delivery id that FTS5 also finds in the body is one row, not two.
    assert queries.count_deliveries(conn, Filters(search="dlv_c00007"), WINDOW) == queries.Count(1, True)
    conn.close()


def test_page_and_count_cost_the_page_not_the_window(tmp_path: Path) -> None:
    """Three times the rows in the window: a common word's first page and capped count, and a rare word's
    count and page, cost about the same (they read a page, the cap, or the matches)."""
    path = tmp_path / "grow.db"
    _write(path, 0, 2_500)

    def cost() -> int:
        conn = archive.connect(path, readonly=True)
        try:
            def run() -> None:
                for word in ("parcel", "zebra"):
                    view = Filters(search=word)
                    queries.count_deliveries(conn, view, WINDOW, cap=300)
                    queries.delivery_page(conn, view, WINDOW, limit=50)

            return _steps(conn, run)
        finally:
            conn.close()

    small = cost()
    _write(path, 2_500, 5_000, hours=23)
    large = cost()
    assert large <= small * 1.3, f"{small} -> {large} steps for three times the rows in the window"


def test_a_search_too_common_to_count_is_scoped_to_the_latest_matches(many: Path) -> None:
    conn = archive.connect(many, readonly=True)
    view = Filters(search="parcel")
    whole = queries.search_window(conn, view, WINDOW, cap=5_000)
    assert whole == queries.SearchWindow(WINDOW, False)
    scoped = queries.search_window(conn, view, WINDOW, cap=400)
    assert scoped.capped and scoped.window.until == WINDOW.until and scoped.window.since > WINDOW.since
    assert scoped.window.since.minute == 0 and scoped.window.since.second == 0 and scoped.window.since.microsecond == 0
    in_scope = summary(conn, view, scoped.window).deliveries
    # 3,000 matches over 20 hours: the last 4 hours hold 600 (> 400), the last 2 only 300.
    assert scoped.window.since == NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    assert in_scope == len([i for i in _ids(conn, view, "candidates")
                            if i in set(queries.delivery_page(conn, view, scoped.window, limit=1000).rows["id"])]) > 400
    conn.close()


def test_status_rollup_and_spans_follow_the_raw_rows(many: Path) -> None:
    assert_archive_consistent(many)


def test_failures_by_status_come_from_the_status_rollup(many: Path) -> None:
    """Inflate one whole hour of the status rollup: the breakdown follows it (it does not read raw rows there)."""
    conn = archive.connect(many, readonly=True)
    before = queries.failures_by_status(conn, Filters(), WINDOW)
    raw = conn.execute("SELECT response_status, COUNT(*) FROM deliveries WHERE success = 0 AND delivered_at >= ? "
                       "AND delivered_at < ? GROUP BY 1", (WINDOW.since_text, WINDOW.until_text)).fetchall()
    assert dict(zip(before["response_status"], before["failures"])) == dict(raw) and raw
    conn.close()
    db = archive.connect(many)
    hour = (NOW - timedelta(hours=5)).strftime("%Y-%m-%dT%H")
    with archive.transaction(db):
        db.execute("UPDATE delivery_hourly_status SET failures = failures + 1000 WHERE hour = ?", (hour,))
    after = queries.failures_by_status(db, Filters(), WINDOW)
    with archive.transaction(db):
        db.execute("UPDATE delivery_hourly_status SET failures = failures - 1000 WHERE hour = ?", (hour,))
    db.close()
    assert int(after["failures"].sum()) == int(before["failures"].sum()) + 2000  # ALPHA's and BETA's rows
    assert queries.failures_by_status(archive.connect(many, readonly=True), Filters(outcome="success"), WINDOW).empty


def test_an_archive_of_the_previous_schema_gains_the_rollups_filled_from_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    _write(path, 0, 700)
    db = archive.connect(path)
    db.execute("DROP TABLE delivery_hourly_status")
    db.execute("DROP TABLE delivery_spans")
    # The rollups' migration, as ensure_db_shape runs it on an archive of the schema before it (later
    # migrations, such as the payload column, cannot run twice, so the step is run alone here).
    from collectors.archive.rollups import migrate_add_rollups

    assert migrate_add_rollups in archive.schema._MIGRATIONS
    with archive.transaction(db):
        migrate_add_rollups(db)
    assert db.execute("SELECT SUM(failures) FROM delivery_hourly_status").fetchone()[0] == 100
    assert queries.count_deliveries(db, Filters(search="zebra"), WINDOW) == queries.Count(1, True)
    db.close()
    assert_archive_consistent(path)


def test_the_overview_of_a_search_matching_over_10000_says_which_hours_its_figures_cover(run_app, tmp_path: Path) -> None:
    from tests.dashboard.test_app import metrics, no_exception

    path = tmp_path / "common.db"
    _write(path, 0, 13_000)  # every entry says "parcel": 650 an hour over the 20 hours before NOW
    query = {"range": "custom", "since": "2026-11-19T12:00:00Z", "until": "2026-11-20T12:00:00Z", "q": "parcel"}
    at = run_app(path, query=query)
    no_exception(at)
    note = [i.value for i in at.info if "more than 10,000" in i.value]
    # The last 8 whole hours hold about 5,200 matches, the last 16 about 10,400: the figures cover those 16.
    assert note and "delivered from 2026-11-19 20:00:00 UTC on" in note[0], [i.value for i in at.info]
    db = sqlite3.connect(path)
    expected = db.execute("SELECT COUNT(*) FROM deliveries WHERE delivered_at >= '2026-11-19T20' "
                          "AND delivered_at < '2026-11-20T12'").fetchone()[0]
    db.close()
    assert expected > 10_000 and metrics(at)["Deliveries"][0] == f"{expected:,}"
    at.switch_page("views/deliveries.py").run()
    no_exception(at)
    assert metrics(at)["Deliveries in view"][0] == "10,000+"
