"""Coverage arithmetic: merging, watermark, gaps and the AT RISK rule, plus its table storage."""

from datetime import timedelta

import pytest

from collectors import archive
from collectors.archive.coverage import (
    AT_RISK_HORIZON,
    RETENTION,
    Interval,
    add_interval,
    at_risk,
    clip,
    gaps,
    load_intervals,
    merge,
    record_interval,
    watermark,
)
from collectors.sync import EDGE_CHUNK, plan_chunks

from .fake_moego import utc

NOW = utc(2026, 11, 29, 12)
H = timedelta(hours=1)


def iv(start_h: float, end_h: float) -> Interval:
    """An interval in hours relative to NOW."""
    return Interval(NOW + start_h * H, NOW + end_h * H)


def test_merge_joins_touching_and_overlapping_and_drops_empty():
    assert merge([iv(-5, -3), iv(-10, -8), iv(-3, -2), iv(-9, -7), iv(-1, -1)]) == [iv(-10, -7), iv(-5, -2)]


def test_add_interval_bridges_a_gap_exactly_filled():
    assert add_interval([iv(-10, -8), iv(-6, -4)], iv(-8, -6)) == [iv(-10, -4)]


def test_clip_keeps_only_the_parts_inside():
    assert clip([iv(-10, -8), iv(-6, -4)], NOW - 9 * H, NOW - 5 * H) == [iv(-9, -8), iv(-6, -5)]


def test_watermark_is_end_of_coverage_contiguous_from_window_start():
    start = NOW - RETENTION
    full = Interval(start - H, NOW - 5 * H)
    assert watermark([full, iv(-3, -1)], start) == NOW - 5 * H  # a hole at -5..-3 is not stepped over
    assert watermark([iv(-3, -1)], start) == start  # nothing at the window start: read from it
    assert watermark([], start) == start


def test_gaps_lists_uncovered_parts_oldest_first():
    start = NOW - 10 * H
    assert gaps([iv(-9, -7), iv(-5, -4)], start, NOW) == [iv(-10, -9), iv(-7, -5), iv(-4, 0)]
    assert gaps([iv(-11, 1)], start, NOW) == []


def test_at_risk_is_uncovered_part_expiring_within_48h():
    window_start = NOW - RETENTION
    covered_all = [Interval(window_start, NOW)]
    assert at_risk(covered_all, NOW) == []
    # A hole three days after the window start expires in three days: a gap, not at risk.
    hole = Interval(window_start + timedelta(days=3), window_start + timedelta(days=3, hours=2))
    covered = [Interval(window_start, hole.start), Interval(hole.end, NOW)]
    assert gaps(covered, window_start, NOW) == [hole]
    assert at_risk(covered, NOW) == []
    # The same hole one day after the window start expires within 48 h: at risk.
    hole = Interval(window_start + timedelta(days=1), window_start + timedelta(days=1, hours=2))
    covered = [Interval(window_start, hole.start), Interval(hole.end, NOW)]
    assert at_risk(covered, NOW) == [hole]
    # A gap straddling the 48 h line: only its part before the line is at risk.
    line = window_start + AT_RISK_HORIZON
    covered = [Interval(window_start, line - H), Interval(line + H, NOW)]
    assert at_risk(covered, NOW) == [Interval(line - H, line)]
    # No coverage at all (never collected): the oldest 48 h are at risk.
    assert at_risk([], NOW) == [Interval(window_start, line)]


def test_plan_chunks_oldest_first_with_a_short_first_chunk_at_the_retention_edge():
    edge = NOW - RETENTION
    chunks = plan_chunks(edge, edge + 13 * H, length=6 * H, edge=edge)
    assert chunks[0] == Interval(edge, edge + EDGE_CHUNK)
    assert chunks[1:] == [
        Interval(edge + EDGE_CHUNK, edge + EDGE_CHUNK + 6 * H),
        Interval(edge + EDGE_CHUNK + 6 * H, edge + 12 * H + EDGE_CHUNK),
        Interval(edge + 12 * H + EDGE_CHUNK, edge + 13 * H),
    ]
    # Away from the edge: plain chunks, and together they tile the window exactly.
    chunks = plan_chunks(NOW - 7 * H, NOW, length=6 * H, edge=edge)
    assert chunks == [iv(-7, -1), iv(-1, 0)]
    assert plan_chunks(NOW, NOW, edge=edge) == []
    with pytest.raises(ValueError):
        plan_chunks(NOW - H, NOW, length=timedelta(0))


@pytest.fixture
def db(tmp_path):
    database = archive.connect(tmp_path / "a.db")
    archive.ensure_db_shape(database)
    yield database
    database.close()


def test_record_interval_merges_rows_in_the_table(db):
    with archive.transaction(db):
        record_interval(db, "w1", iv(-10, -8))
        record_interval(db, "w1", iv(-6, -4))
        record_interval(db, "w2", iv(-9, -7))
    with archive.transaction(db):
        after = record_interval(db, "w1", iv(-8, -6))
    assert after == [iv(-10, -4)]
    rows = db.execute("SELECT webhook_id, start, end FROM coverage ORDER BY webhook_id").fetchall()
    assert len(rows) == 2  # w1's three pieces became one row; w2 untouched
    assert load_intervals(db, "w2") == [iv(-9, -7)]


def test_record_interval_refuses_to_run_outside_a_transaction(db):
    with pytest.raises(RuntimeError):
        record_interval(db, "w1", iv(-2, -1))
