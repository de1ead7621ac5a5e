"""The pure rules behind the collector's bounds: re-read spans, page guards, skew corrections, secret scrubbing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from collectors.config import ConfigError, load_settings, parse_duration
from collectors.models import RetryPolicy, WebhookDelivery
from collectors.overlap import MAX_REREAD, retry_span, reread_span
from collectors.redaction import scrub_secrets
from collectors.skew import correction, warning
from collectors.validate import PageGuard, check_page, max_entries

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def test_the_sandbox_default_policy_re_reads_the_overlap_alone():
    default = RetryPolicy(max_retries=3, initial_interval_ms=2000, backoff_factor=2)  # 2 s, 4 s, 8 s

    assert retry_span(default) == timedelta(seconds=4 * 30 + 14)
    assert reread_span(default, timedelta(hours=1)) == timedelta(hours=1)


def test_an_hourly_policy_re_reads_its_seven_hours_even_with_overlap_0():
    hourly = RetryPolicy(max_retries=3, initial_interval_ms=3_600_000, backoff_factor=2)

    assert reread_span(hourly, timedelta(0)) == timedelta(hours=7, minutes=2)


@pytest.mark.parametrize("policy", [
    RetryPolicy(max_retries=2**62, initial_interval_ms=2**62, backoff_factor=2**62),
    RetryPolicy(max_retries=10_000_000, initial_interval_ms=1, backoff_factor=1),
    RetryPolicy(max_retries=60, initial_interval_ms=1000, backoff_factor=10),
])
def test_a_policy_beyond_reason_is_bounded_not_an_overflow(policy):
    assert retry_span(policy) == MAX_REREAD


def test_odd_policy_values_count_as_nothing():
    assert retry_span(None) == timedelta(0)
    assert retry_span(RetryPolicy(max_retries=-5, initial_interval_ms=-1, backoff_factor=0)) == timedelta(seconds=30)
    assert retry_span(RetryPolicy(max_retries=2, initial_interval_ms=60_000, backoff_factor=0)) == timedelta(
        seconds=3 * 30 + 120)


def test_max_entries_follows_moegos_push_limits_with_the_margin():
    assert max_entries(timedelta(minutes=15)) == 2 * 100 * 16
    assert max_entries(timedelta(days=1)) == 2 * 10_000 * 2


def test_page_guard_allows_full_pages_and_a_short_last_one():
    guard = PageGuard.for_span(timedelta(days=1), 500)
    for n in range(1, 40):
        assert guard.add(500, f"t{n}") is None
    assert guard.add(17, "") is None


def test_page_guard_allows_a_few_short_pages():
    guard = PageGuard.for_span(timedelta(days=1), 500)
    assert [guard.add(100, f"t{n}") for n in range(1, 6)] == [None] * 5


def test_a_page_dated_at_the_end_of_its_chunk_is_refused_and_at_the_start_accepted():
    def one(at: datetime) -> list[WebhookDelivery]:
        return [WebhookDelivery(id="d1", webhook_id="whk_1", delivered_at=at)]

    end = T0 + timedelta(hours=1)
    assert check_page(one(T0), webhook_id="whk_1", start=T0, end=end, page_size=500) is None
    assert "outside the requested" in check_page(one(end), webhook_id="whk_1", start=T0, end=end, page_size=500)


def test_a_long_server_value_is_cut_in_the_message():
    at = T0 + timedelta(minutes=1)
    problem = check_page([WebhookDelivery(id="x" * 10_000, webhook_id="whk_2", delivered_at=at)],
                         webhook_id="whk_1", start=T0, end=T0 + timedelta(hours=1), page_size=500)
    assert problem is not None and len(problem) < 250


def test_skew_corrections_are_applied_only_between_tolerance_and_a_day():
    assert correction(None) == timedelta(0)
    assert correction(timedelta(seconds=1)) == timedelta(0)
    assert correction(timedelta(minutes=-10)) == timedelta(minutes=-10)
    assert correction(timedelta(days=400)) == timedelta(0)
    assert warning(20.0) is None
    assert warning(-600.0).startswith("this host's clock is 10 min ahead of MoeGo's: the collector corrects")
    assert "cannot correct a skew this large" in warning(400 * 86400.0)


def test_a_date_at_the_end_of_time_is_measured_but_not_applied():
    from collectors.client import ServerTime
    from collectors.skew import measure

    far = measure(ServerTime(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc), 0.0), lambda mono: T0)
    assert far is not None and far > timedelta(days=365 * 7000)
    assert correction(far) == timedelta(0)


def test_scrubbing_leaves_ordinary_text_alone_and_every_form_of_the_key_out():
    key = "k3y/with+odd=chars"
    text = ("401 for Basic azN5L3dpdGgrb2RkPWNoYXJz, raw k3y/with+odd=chars, quoted k3y%2Fwith%2Bodd%3Dchars, "
            "bearer abc.def, plain words stay")
    out = scrub_secrets(text, [key])
    assert "k3y" not in out and "azN5" not in out and "abc.def" not in out
    assert out.endswith("plain words stay")


@pytest.mark.parametrize("text", ["99999999999d", "1e400", "1" * 500 + "d"])
def test_durations_too_long_are_a_config_error(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_the_new_settings_come_from_the_environment_with_their_bounds():
    settings = load_settings({"MOEGO_DEADLINE": "30s", "MOEGO_PASS_BUDGET": "45m", "MOEGO_SYNC_OVERLAP": "0s"})
    assert (settings.deadline_s, settings.pass_budget, settings.overlap) == (30.0, timedelta(minutes=45), timedelta(0))
    with pytest.raises(ConfigError, match="must be between 1m and 1d"):
        load_settings({"MOEGO_PASS_BUDGET": "5s"})
