"""Filters: normalisation, the URL round trip, forgiving parsing, windows and buckets."""

from datetime import datetime, timedelta, timezone

import pytest

from collectors.archive.filters import Filters, Window, ceil_minute
from dashboard.filters import EARLIEST, choose_bucket, clamped, from_query_params, to_query_params
from collectors.archive.where import fts_query

UTC = timezone.utc
NOW = datetime(2026, 11, 20, 12, 34, 56, 789, tzinfo=UTC)


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(time_range="7d", outcome="failed"),
        Filters(time_range="30d", webhooks=("wh_b", "wh_a"), event_types=("PET_CREATED",), status_classes=("5xx", "none")),
        Filters(time_range="custom", since=datetime(2026, 10, 1, tzinfo=UTC), until=datetime(2026, 10, 3, 6, tzinfo=UTC),
                search="Ada Lovelace"),
        Filters(time_range="custom", since=datetime(2026, 10, 1, 0, 0, 0, 5, tzinfo=UTC),
                until=datetime(2026, 10, 2, tzinfo=timezone(timedelta(hours=2))), outcome="success"),
    ],
)
def test_query_params_round_trip(filters: Filters) -> None:
    assert from_query_params(to_query_params(filters)) == filters


def test_defaults_leave_the_url_empty_and_lists_repeat_keys() -> None:
    assert to_query_params(Filters()) == {}
    params = to_query_params(Filters(webhooks=("b", "a", "a"), outcome="failed", search="  x   y "))
    assert params == {"webhook": ["a", "b"], "outcome": "failed", "q": "x y"}


def test_custom_range_is_written_as_utc_instants() -> None:
    f = Filters(time_range="custom", since=datetime(2026, 11, 1, 1, tzinfo=timezone(timedelta(hours=1))),
                until=datetime(2026, 11, 8, tzinfo=UTC))
    assert to_query_params(f) == {"range": "custom", "since": "2026-11-01T00:00:00Z", "until": "2026-11-08T00:00:00Z"}


def test_malformed_links_fall_back_to_defaults() -> None:
    f = from_query_params({"range": "1y", "outcome": "maybe", "status": ["5xx", "9xx"], "webhook": ["", "wh_1"]})
    assert f == Filters(status_classes=("5xx",), webhooks=("wh_1",))
    inverted = from_query_params({"range": "custom", "since": "2026-11-08T00:00:00Z", "until": "2026-11-01T00:00:00Z"})
    assert inverted == Filters()
    garbled = from_query_params({"range": "custom", "since": "yesterday", "until": "2026-11-01T00:00:00Z"})
    assert garbled == Filters()


def test_a_link_reaching_past_sane_dates_is_clamped() -> None:
    link = {"range": "custom", "since": "0001-01-01T00:00:00Z", "until": "9999-12-31T00:00:00Z"}
    f = from_query_params(link, now=NOW)
    assert (f.since, f.until) == (datetime(2000, 1, 1, tzinfo=UTC), NOW + timedelta(days=1))
    assert clamped(link, f)
    window = f.window(NOW)
    assert window.previous().until == EARLIEST  # no OverflowError: the "previous period" of it exists too
    assert to_query_params(f) == {"range": "custom", "since": "2000-01-01T00:00:00Z", "until": "2026-11-21T12:34:56.000789Z"}
    inside = {"range": "custom", "since": "2026-11-01T00:00:00+01:00", "until": "2026-11-02T00:00:00Z"}
    assert not clamped(inside, from_query_params(inside, now=NOW))
    # Both ends beyond the same edge leave nothing: the default range, as for any empty custom range.
    assert from_query_params({"range": "custom", "since": "9000-01-01T00:00:00Z", "until": "9999-01-01T00:00:00Z"},
                             now=NOW) == Filters()


def test_the_last_of_repeated_single_values_wins() -> None:
    assert from_query_params({"outcome": ["success", "failed"]}).outcome == "failed"


def test_invalid_filters_are_refused_on_construction() -> None:
    with pytest.raises(ValueError, match="unknown time range"):
        Filters(time_range="1y")
    with pytest.raises(ValueError, match="needs since and until"):
        Filters(time_range="custom")
    with pytest.raises(ValueError, match="end after"):
        Filters(time_range="custom", since=NOW, until=NOW)
    with pytest.raises(ValueError, match="status class"):
        Filters(status_classes=("6xx",))


def test_preset_window_ends_at_the_next_whole_minute() -> None:
    window = Filters(time_range="7d").window(NOW)
    assert window.until == datetime(2026, 11, 20, 12, 35, tzinfo=UTC)
    assert window.since == window.until - timedelta(days=7)
    assert window.previous() == Window(window.since - timedelta(days=7), window.since)
    assert ceil_minute(datetime(2026, 1, 1, 0, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def test_custom_window_is_exact_and_can_reach_past_the_retention() -> None:
    since, until = NOW - timedelta(days=40), NOW - timedelta(days=20)
    assert Filters(time_range="custom", since=since, until=until).window(NOW) == Window(since, until)


@pytest.mark.parametrize(
    ("span", "bucket"),
    [(timedelta(hours=1), "minute"), (timedelta(hours=6), "minute"), (timedelta(hours=24), "hour"),
     (timedelta(days=7), "hour"), (timedelta(days=15), "day"), (timedelta(days=30), "day")],
)
def test_bucket_follows_the_span(span: timedelta, bucket: str) -> None:
    assert choose_bucket(Window(NOW - span, NOW)) == bucket


def test_search_text_is_quoted_for_fts5() -> None:
    assert fts_query('cust_42 "x') == '"cust_42" """x"'
    assert fts_query("  ") == ""
