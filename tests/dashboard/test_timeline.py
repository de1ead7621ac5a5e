"""One event, all its attempts (dashboard.timeline): what each entry is, and the next retry MoeGo's policy predicts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from dashboard.timeline import attempt_kinds, next_retry

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
POLICY = {"maxRetries": 3, "initialIntervalMs": 2000, "backoffFactor": 2, "retryableHttpCodes": [500, 502, 503, 504]}


def test_each_entry_is_named_original_redelivery_or_later() -> None:
    attempts = pd.DataFrame({"id": ["d1", "d2", "d3", "d4"], "webhook_id": ["a", "b", "a", "a"]})
    kinds = attempt_kinds(attempts, {"d3": "alice"})
    assert list(kinds) == ["original", "original", "redelivery (by alice)", "later entry"]


def test_the_next_retry_follows_the_backoff_from_the_first_attempt() -> None:
    # Two retries made (after 2 s and 4 s): the third comes 8 s later, 14 s after the first attempt started.
    guess = next_retry(delivered_at=T0, success=False, response_status=503, retry_count=2, policy=POLICY, now=T0)
    assert guess.at == T0 + timedelta(seconds=14) and guess.text == "retry 3 of 3 expected about then"
    late = next_retry(delivered_at=T0, success=False, response_status=0, retry_count=0, policy=POLICY,
                      now=T0 + timedelta(minutes=5))
    assert late.at == T0 + timedelta(seconds=2) and "the archive shows it after the next collection" in late.text


def test_no_retry_when_none_will_come() -> None:
    common = dict(delivered_at=T0, now=T0, policy=POLICY)
    assert next_retry(success=True, response_status=200, retry_count=0, **common).at is None
    exhausted = next_retry(success=False, response_status=503, retry_count=3, **common)
    assert (exhausted.at, exhausted.text) == (None, "retries exhausted (3 of 3): MoeGo retries it no more")
    client_error = next_retry(success=False, response_status=404, retry_count=0, **common)
    assert client_error.text == "HTTP 404 is not retryable under its policy: MoeGo retries it no more"
    unknown = next_retry(delivered_at=T0, now=T0, policy=None, success=False, response_status=503, retry_count=1)
    assert unknown.at is None and unknown.text.startswith("MoeGo retries it (retry 2 of 3)")
