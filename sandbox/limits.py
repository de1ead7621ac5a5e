"""Push limits per webhook: at most 100 pushes in any minute and 10,000 in any day.

A push is any real POST attempt: first attempts, automatic retries, redeliveries and tests. Seeded
history counts too (each entry's first attempt and its retries, at its ``deliveredAt``): history is
generated through the same limiter, so it never holds more than the limits allow, and the limiter
starts with the last day of it.

A "day" is rolling, not a calendar day: the limits hold in every window of 24 h, which also
satisfies any per-calendar-day reading of MoeGo's "10,000 a day". To stay cheap at full volume
(1.5 M seeded entries), pushes are counted per time bucket, not kept one by one:

- minute: 1-second buckets; a push at time ``t`` counts the buckets of the last 60 seconds
  (``t``'s bucket and the 59 before it);
- day: 1-minute buckets; the buckets of the last 1,440 minutes (``t``'s bucket and 1,439 before).

So a webhook holds at most 60 + 1,440 small counters whatever its volume. Windows slide on the
sandbox clock: advancing the clock also frees them.
"""

from __future__ import annotations

import math
from collections import deque

from sandbox.clock import NS_PER_SECOND

__all__ = ["PushLimiter", "PushUsage", "PER_MINUTE", "PER_DAY"]

PER_MINUTE = 100
PER_DAY = 10_000
_MINUTE_NS = 60 * NS_PER_SECOND


class _Window:
    """Pushes in the last ``span`` buckets of ``width_ns`` each, at most ``limit``."""

    __slots__ = ("width", "span", "limit", "buckets", "total")

    def __init__(self, width_ns: int, span: int, limit: int) -> None:
        self.width = width_ns
        self.span = span
        self.limit = limit
        self.buckets: deque[list[int]] = deque()  # [bucket number, pushes], oldest first
        self.total = 0

    def expire(self, now_ns: int) -> None:
        """Forget buckets that have left the window at ``now_ns``."""
        first = now_ns // self.width - self.span + 1
        buckets = self.buckets
        while buckets and buckets[0][0] < first:
            self.total -= buckets.popleft()[1]

    def wait_ns(self, now_ns: int, n: int) -> float:
        """Nanoseconds until ``n`` more pushes fit (0: now; inf: never). Call :meth:`expire` first."""
        excess = self.total + n - self.limit
        if excess <= 0:
            return 0
        if n > self.limit:
            return math.inf
        for bucket, pushes in self.buckets:
            excess -= pushes
            if excess <= 0:
                return (bucket + self.span) * self.width - now_ns
        return math.inf  # unreachable: the buckets hold ``total`` pushes


class PushUsage:
    """The minute and day windows of one webhook."""

    __slots__ = ("minute", "day")

    def __init__(self, per_minute: int, per_day: int) -> None:
        self.minute = _Window(NS_PER_SECOND, 60, per_minute)
        self.day = _Window(_MINUTE_NS, 1440, per_day)

    def wait_ns(self, now_ns: int, n: int = 1) -> float:
        """Nanoseconds until ``n`` more pushes fit in both windows (0: now; inf: never)."""
        minute, day = self.minute, self.day
        minute.expire(now_ns)
        day.expire(now_ns)
        return max(minute.wait_ns(now_ns, n), day.wait_ns(now_ns, n))

    def try_add(self, now_ns: int, n: int = 1) -> bool:
        """Count ``n`` pushes at ``now_ns`` if both windows have room; else count nothing, False.

        Calls come in time order. Seeding calls this once per history entry (1.5 M times at full
        volume), so the window steps are inlined. A clock that stepped back counts in the newest bucket.
        """
        minute, day = self.minute, self.day
        m_bucket, d_bucket = now_ns // minute.width, now_ns // day.width
        m_buckets, d_buckets = minute.buckets, day.buckets
        first = m_bucket - minute.span + 1
        while m_buckets and m_buckets[0][0] < first:
            minute.total -= m_buckets.popleft()[1]
        first = d_bucket - day.span + 1
        while d_buckets and d_buckets[0][0] < first:
            day.total -= d_buckets.popleft()[1]
        if minute.total + n > minute.limit or day.total + n > day.limit:
            return False
        if m_buckets and m_buckets[-1][0] >= m_bucket:
            m_buckets[-1][1] += n
        else:
            m_buckets.append([m_bucket, n])
        if d_buckets and d_buckets[-1][0] >= d_bucket:
            d_buckets[-1][1] += n
        else:
            d_buckets.append([d_bucket, n])
        minute.total += n
        day.total += n
        return True

    def counts(self, now_ns: int) -> tuple[int, int]:
        """Pushes in the last minute and in the last day."""
        self.minute.expire(now_ns)
        self.day.expire(now_ns)
        return self.minute.total, self.day.total

    def buckets(self) -> int:
        """How many counters are held (at most 60 + 1,440)."""
        return len(self.minute.buckets) + len(self.day.buckets)


class PushLimiter:
    """Sliding-window push counters per webhook (see the module docstring)."""

    def __init__(self, per_minute: int = PER_MINUTE, per_day: int = PER_DAY) -> None:
        if per_minute < 1 or per_day < 1:
            raise ValueError("push limits must be >= 1")
        self.per_minute = per_minute
        self.per_day = per_day
        self._usage: dict[str, PushUsage] = {}

    def of(self, webhook_id: str) -> PushUsage:
        """The windows of a webhook (created empty on first use)."""
        usage = self._usage.get(webhook_id)
        if usage is None:
            usage = self._usage[webhook_id] = PushUsage(self.per_minute, self.per_day)
        return usage

    def forget(self, webhook_id: str) -> None:
        """Drop a deleted webhook's counters."""
        self._usage.pop(webhook_id, None)

    def wait_seconds(self, webhook_id: str, now_ns: int) -> float:
        """0 if a push may go now, else the seconds until one may."""
        return self.of(webhook_id).wait_ns(now_ns) / NS_PER_SECOND

    def acquire(self, webhook_id: str, now_ns: int) -> float:
        """Record a push and return 0 if allowed now; else return the wait and record nothing."""
        usage = self.of(webhook_id)
        if usage.try_add(now_ns):
            return 0.0
        return max(usage.wait_ns(now_ns) / NS_PER_SECOND, 1e-9)

    def usage(self, webhook_id: str, now_ns: int) -> tuple[int, int]:
        """Pushes in the last minute and in the last day."""
        return self.of(webhook_id).counts(now_ns)

    @staticmethod
    def retry_after(wait: float) -> int:
        """A ``Retry-After`` value (whole seconds, at least 1) for a wait."""
        return max(1, math.ceil(wait))
