"""One event, all its attempts: what each archived entry is, and the next retry MoeGo's policy predicts.

Pure functions (no Streamlit). An event's entries (:func:`dashboard.queries.event_attempts`) are each
the *original* delivery to a webhook (its first entry there), a *redelivery* (an entry the audit names
as the new attempt of a redelivery) or a *later entry* (MoeGo sent the event again on its own, e.g. a
test). MoeGo's automatic retries do not make entries: they update the entry they retry (its
``retry_count``), so the timeline says how many each entry made. :func:`next_retry` predicts the next
one from the webhook's ``retryPolicy`` (``maxRetries``, ``initialIntervalMs * backoffFactor**n``,
``retryableHttpCodes``; timeouts and refused connections are retried too), counted from the entry's
``deliveredAt``, which is the start of its first attempt: an estimate, since each attempt's own duration
adds to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

import pandas as pd

__all__ = ["DEFAULT_MAX_RETRIES", "Prediction", "attempt_kinds", "next_retry"]

#: MoeGo retries a failed delivery up to this many times when the webhook's policy does not say.
DEFAULT_MAX_RETRIES = 3


def attempt_kinds(attempts: pd.DataFrame, redelivered: Mapping[str, str]) -> pd.Series:
    """Per attempt (oldest first), ``original``, ``redelivery (by …)`` or ``later entry``.

    ``redelivered`` maps a new attempt's id to who requested the redelivery.
    """
    kinds: list[str] = []
    seen: set[str] = set()
    for row in attempts.itertuples(index=False):
        if row.id in redelivered:
            kinds.append(f"redelivery (by {redelivered[row.id]})")
        elif row.webhook_id not in seen:
            kinds.append("original")
        else:
            kinds.append("later entry")
        seen.add(row.webhook_id)
    return pd.Series(kinds, index=attempts.index, dtype="object")


@dataclass(frozen=True)
class Prediction:
    """What MoeGo will do next with an entry: ``at`` (an estimate) when it retries it, and why in words."""

    at: datetime | None
    text: str


def _int(policy: Mapping[str, Any], key: str, default: int | None) -> int | None:
    try:
        return int(policy.get(key, default)) if policy.get(key, default) is not None else None
    except (TypeError, ValueError):
        return default


def next_retry(*, delivered_at: datetime, success: bool, response_status: int, retry_count: int,
               policy: Mapping[str, Any] | None, now: datetime) -> Prediction:
    """The next automatic retry of an entry, as the webhook's retry policy predicts it (see the module docstring)."""
    if success:
        return Prediction(None, "succeeded: MoeGo retries it no more")
    policy = policy or {}
    max_retries = _int(policy, "maxRetries", DEFAULT_MAX_RETRIES) or 0
    if retry_count >= max_retries:
        return Prediction(None, f"retries exhausted ({retry_count} of {max_retries}): MoeGo retries it no more")
    codes = {int(c) for c in policy.get("retryableHttpCodes", []) if str(c).isdigit()}
    if response_status and codes and response_status not in codes:
        return Prediction(None, f"HTTP {response_status} is not retryable under its policy: MoeGo retries it no more")
    interval = _int(policy, "initialIntervalMs", None)
    if interval is None:
        return Prediction(None, f"MoeGo retries it (retry {retry_count + 1} of {max_retries}); the webhook's "
                                "policy is not archived, so not when")
    factor = _int(policy, "backoffFactor", 1) or 1
    waited_ms = sum(interval * factor ** n for n in range(retry_count + 1))
    at = delivered_at + timedelta(milliseconds=waited_ms)
    if at < now:
        return Prediction(at, f"retry {retry_count + 1} of {max_retries} was due about then: the archive shows it "
                              "after the next collection")
    return Prediction(at, f"retry {retry_count + 1} of {max_retries} expected about then")
