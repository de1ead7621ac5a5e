"""How far back each webhook's recent past is re-read: until MoeGo has finished retrying what it logged.

MoeGo logs an entry after its first attempt and keeps changing it (``retryCount``, ``success``,
``responseStatus``, ``error``) while it retries, as the webhook's ``retryPolicy`` says: retry ``n``
(1-based) waits ``initialIntervalMs x backoffFactor^(n-1)`` after the attempt before it, up to
``maxRetries`` retries, and each attempt may take up to the 30 s delivery timeout. An entry is
final once that whole span has passed, so each sync re-reads at least that far back.

``--overlap`` (``MOEGO_SYNC_OVERLAP``, default 1 h) is the *minimum*: a webhook re-reads
``max(overlap, retry span)``, the retry span bounded by :data:`MAX_REREAD`. A webhook without a
policy re-reads the overlap alone.
"""

from __future__ import annotations

from datetime import timedelta

from .models import RetryPolicy

__all__ = ["ATTEMPT_TIMEOUT", "MAX_REREAD", "retry_span", "reread_span"]

#: How long MoeGo waits for an endpoint on one attempt (contract: answer within 30 s).
ATTEMPT_TIMEOUT = timedelta(seconds=30)
#: The longest span a retry policy may make a sync re-read (a policy retrying longer is re-read this far).
MAX_REREAD = timedelta(days=2)


def retry_span(policy: RetryPolicy | None) -> timedelta:
    """From an entry's first attempt to the end of its last retry under ``policy``, at most :data:`MAX_REREAD`.

    Negative or absent values count as 0; a ``backoffFactor`` below 1 counts as 1 (constant waits).
    """
    if policy is None:
        return timedelta(0)
    retries = max(0, policy.max_retries)
    interval = max(0, policy.initial_interval_ms) / 1000.0
    factor = max(1, policy.backoff_factor)
    limit = MAX_REREAD.total_seconds()
    total = min(retries + 1, 10_000) * ATTEMPT_TIMEOUT.total_seconds()
    delay = interval
    for _ in range(retries):
        total += delay
        if total >= limit:
            return MAX_REREAD
        delay *= factor
    return timedelta(seconds=min(total, limit))


def reread_span(policy: RetryPolicy | None, minimum: timedelta) -> timedelta:
    """How far before its watermark a webhook's sync starts: ``minimum`` (``--overlap``) or its retry span."""
    return max(minimum, retry_span(policy))
