"""Push limits per webhook: at most 100 pushes in any minute and 10,000 in any day.

A push is any real POST attempt: first attempts, automatic retries, redeliveries and tests.
Windows slide on the sandbox clock, so advancing the clock also frees them.
"""

from __future__ import annotations

import math
from collections import deque

from sandbox.clock import NS_PER_DAY, NS_PER_SECOND

__all__ = ["PushLimiter", "PER_MINUTE", "PER_DAY"]

PER_MINUTE = 100
PER_DAY = 10_000
_MINUTE_NS = 60 * NS_PER_SECOND


class PushLimiter:
    """Sliding-window counters of pushes per webhook."""

    def __init__(self, per_minute: int = PER_MINUTE, per_day: int = PER_DAY) -> None:
        self.per_minute = per_minute
        self.per_day = per_day
        self._pushes: dict[str, deque[int]] = {}
        self.total = 0

    def _window(self, webhook_id: str, now_ns: int) -> deque[int]:
        pushes = self._pushes.setdefault(webhook_id, deque())
        while pushes and pushes[0] <= now_ns - NS_PER_DAY:
            pushes.popleft()
        return pushes

    def wait_seconds(self, webhook_id: str, now_ns: int) -> float:
        """0 if a push may go now, else the seconds until one may."""
        pushes = self._window(webhook_id, now_ns)
        waits = [0.0]
        if len(pushes) >= self.per_day:
            waits.append((pushes[len(pushes) - self.per_day] + NS_PER_DAY - now_ns) / NS_PER_SECOND)
        if len(pushes) >= self.per_minute:
            nth = pushes[len(pushes) - self.per_minute]
            if nth > now_ns - _MINUTE_NS:
                waits.append((nth + _MINUTE_NS - now_ns) / NS_PER_SECOND)
        return max(waits)

    def acquire(self, webhook_id: str, now_ns: int) -> float:
        """Record a push and return 0 if allowed now; else return the wait and record nothing."""
        wait = self.wait_seconds(webhook_id, now_ns)
        if wait > 0:
            return wait
        self._pushes.setdefault(webhook_id, deque()).append(now_ns)
        self.total += 1
        return 0.0

    def usage(self, webhook_id: str, now_ns: int) -> tuple[int, int]:
        """Pushes in the last minute and in the last day."""
        pushes = self._window(webhook_id, now_ns)
        minute = sum(1 for t in pushes if t > now_ns - _MINUTE_NS)
        return minute, len(pushes)

    @staticmethod
    def retry_after(wait: float) -> int:
        """A ``Retry-After`` value (whole seconds, at least 1) for a wait."""
        return max(1, math.ceil(wait))
