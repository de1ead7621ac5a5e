"""Failures by response status over several days: whole days from the daily rollup, the same numbers as the raw rows.

What a user checks: the "Failures by response status" breakdown of any window (whole days, hours around
them, partial hours at both ends; filtered by webhook, event type or status class) says what counting the
failed deliveries one by one says, also after MoeGo rewrote some of them; and an archive of the schema
before the daily rollup gains it, filled from what it holds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collectors import archive
from collectors.archive import writer
from collectors.archive.filters import Filters, Window
from collectors.archive.rollups import migrate_add_daily_status
from dashboard import queries

from tests.collectors.conftest import assert_archive_consistent
from tests.seed import ALPHA, BETA, delivery

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
STATUSES = (200, 200, 500, 503, 404, 0, 200, 502)
EVENTS = ("APPOINTMENT_CREATED", "CUSTOMER_UPDATED", "PET_UPDATED")


def _deliveries(count: int) -> list:
    """``count`` deliveries every 7 minutes back from NOW (about 4.5 days for 900), failures of every kind."""
    out = []
    for i in range(count):
        status = STATUSES[i % len(STATUSES)]
        ok = status == 200
        out.append(delivery(f"dlv_d{i:05d}", (ALPHA, BETA)[i % 2], NOW - timedelta(minutes=7 * i + 1),
                            success=ok, status=status, event_type=EVENTS[i % 3],
                            error="" if ok else ("context deadline exceeded" if status == 0 else f"unexpected status {status}")))
    return out


def build_days(path: Path) -> Path:
    """Four and a half days through the writer (pages of 200), then MoeGo's rewrite of 60 entries (outcome changed)."""
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    rows = _deliveries(900)
    for start in range(0, len(rows), 200):
        with archive.transaction(conn):
            writer.save_deliveries(conn, rows[start : start + 200], seen_at=NOW)
    rewritten = [replace(d, success=not d.success, response_status=200 if not d.success else 503,
                         error="" if not d.success else "unexpected status 503") for d in rows[100:700:10]]
    with archive.transaction(conn):
        result = writer.save_deliveries(conn, rewritten, seen_at=NOW + timedelta(minutes=1))
    assert result.updated == 60
    conn.close()
    return path


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_days(tmp_path_factory.mktemp("days") / "days.db")


def raw_where(filters: Filters, window: Window) -> tuple[str, list]:
    """The raw rows of ``window`` that ``filters``' webhooks, event types and status classes select, as plain SQL."""
    sql = "delivered_at >= ? AND delivered_at < ?"
    params: list = [window.since_text, window.until_text]
    for column, values in (("webhook_id", filters.webhooks), ("event_type", filters.event_types),
                           ("status_class", filters.status_classes)):
        if values:
            sql += f" AND {column} IN ({', '.join('?' for _ in values)})"
            params += values
    return sql, params


def _raw(conn, filters: Filters, window: Window) -> dict[tuple[int, str], int]:
    where, params = raw_where(filters, window)
    sql = f"SELECT response_status, status_class, COUNT(*) FROM deliveries WHERE success = 0 AND {where}"
    return {(s, c): n for s, c, n in conn.execute(sql + " GROUP BY 1, 2", params)}


WINDOWS = [
    Window(NOW - timedelta(days=4, minutes=17), NOW - timedelta(minutes=17)),  # whole days, hours, partial hours
    Window(datetime(2026, 11, 17, tzinfo=timezone.utc), datetime(2026, 11, 19, tzinfo=timezone.utc)),  # days only
    Window(NOW - timedelta(hours=30, minutes=5), NOW - timedelta(hours=2, seconds=3)),  # less than two days
    Window(NOW - timedelta(days=10), NOW + timedelta(days=1)),  # beyond the archive at both ends
]
FILTERS = [Filters(), Filters(webhooks=(ALPHA,)), Filters(event_types=("PET_UPDATED",), status_classes=("5xx",)),
           Filters(outcome="failed", webhooks=(BETA,))]


def test_every_window_and_filter_says_what_the_raw_rows_say(days: Path) -> None:
    assert_archive_consistent(days)
    conn = archive.connect(days, readonly=True)
    for window in WINDOWS:
        for filters in FILTERS:
            got = queries.failures_by_status(conn, filters, window)
            expected = _raw(conn, filters, window)
            assert dict(zip(zip(got["response_status"], got["status_class"]), got["failures"])) == expected, (window, filters)
            assert expected
    conn.close()


def test_whole_days_are_read_from_the_daily_rollup(days: Path, tmp_path: Path) -> None:
    """Inflate one day of the daily rollup: a window holding that whole day follows it, one holding part of it does not."""
    path = tmp_path / "copy.db"
    path.write_bytes(days.read_bytes())
    db = archive.connect(path)
    with archive.transaction(db):
        db.execute("UPDATE delivery_daily_status SET failures = failures + 1000 WHERE day = '2026-11-18' "
                   "AND webhook_id = ?", (ALPHA,))
        inflated = db.execute("SELECT COUNT(*) FROM delivery_daily_status WHERE day = '2026-11-18' AND webhook_id = ?",
                              (ALPHA,)).fetchone()[0]
    whole, part = WINDOWS[1], Window(datetime(2026, 11, 18, 1, tzinfo=timezone.utc), NOW)
    assert int(queries.failures_by_status(db, Filters(), whole)["failures"].sum()) == sum(
        _raw(db, Filters(), whole).values()) + 1000 * inflated
    assert int(queries.failures_by_status(db, Filters(), part)["failures"].sum()) == sum(_raw(db, Filters(), part).values())
    db.close()


def test_an_archive_of_the_schema_before_gains_the_daily_rollup_filled_from_its_hours(days: Path, tmp_path: Path) -> None:
    path = tmp_path / "before.db"
    path.write_bytes(days.read_bytes())
    db = archive.connect(path)
    db.execute("DROP TABLE delivery_daily_status")
    # The daily rollup's migration as ensure_db_shape runs it on an archive of the schema before it (main's 9).
    assert migrate_add_daily_status in archive.schema._MIGRATIONS
    with archive.transaction(db):
        migrate_add_daily_status(db)
    with archive.transaction(db):
        migrate_add_daily_status(db)  # safe to run again
    db.close()
    assert_archive_consistent(path)


def test_an_archive_not_yet_given_the_daily_rollup_says_the_same_and_gains_it_on_the_next_start(days: Path,
                                                                                                 tmp_path: Path) -> None:
    """An archive of the schema before the daily rollup (main's schema 9) reads before the collector migrates it:
    the breakdown then comes from the hours, with the same numbers; the next start adds the table (step 10)."""
    path = tmp_path / "main.db"
    path.write_bytes(days.read_bytes())
    db = archive.connect(path)
    db.execute("DROP TABLE delivery_daily_status")
    for window in WINDOWS:
        got = queries.failures_by_status(db, Filters(), window)
        assert dict(zip(zip(got["response_status"], got["status_class"]), got["failures"])) == _raw(db, Filters(), window)
    daily_step = archive.schema._MIGRATIONS.index(migrate_add_daily_status)
    assert archive.schema.READABLE_FROM <= daily_step  # readable before it: hence the fallback above
    archive.schema._MIGRATIONS[daily_step](db)  # what ensure_db_shape runs for an archive at schema 9
    assert db.execute("SELECT COUNT(*) FROM delivery_daily_status").fetchone()[0] > 0
    for window in WINDOWS:
        got = queries.failures_by_status(db, Filters(), window)
        assert dict(zip(zip(got["response_status"], got["status_class"]), got["failures"])) == _raw(db, Filters(), window)
    db.close()
    assert_archive_consistent(path)
