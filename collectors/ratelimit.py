"""A per-key sliding-window rate limiter, so bulk sends stay within MoeGo's push limits."""

from __future__ import annotations

import collections
import time
from typing import Callable

__all__ = ["DEFAULT_PER_MINUTE", "RateLimiter"]

#: included: 10 are left for them.
DEFAULT_PER_MINUTE = 90


class RateLimiter:
    """At most ``limit`` sends per ``per_s`` seconds for each key (a sliding window), plus imposed pauses.

    :meth:`wait_time` says how long until a key may send, :meth:`record` notes a send, and
    :meth:`penalize` blocks a key for a while (MoeGo's ``retry_after``). ``clock`` is any monotonic
    seconds function, so tests drive it by hand.
    """

    def __init__(self, limit: int = DEFAULT_PER_MINUTE, per_s: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or per_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and per_s > 0")
        self.limit = limit
        self.per_s = per_s
        self.clock = clock
        self._sent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._blocked_until: dict[str, float] = {}

    def wait_time(self, key: str) -> float:
        """Seconds until ``key`` may send again (0 when it may send now)."""
        now = self.clock()
        sent = self._sent[key]
        while sent and sent[0] <= now - self.per_s:
            sent.popleft()
        wait = 0.0
        if len(sent) >= self.limit:
            wait = sent[len(sent) - self.limit] + self.per_s - now
        return max(wait, self._blocked_until.get(key, 0.0) - now, 0.0)

    def record(self, key: str) -> None:
        """Note that ``key`` sent now."""
        self._sent[key].append(self.clock())

    def penalize(self, key: str, seconds: float) -> None:
        """Let ``key`` send nothing for ``seconds`` from now (never shortening an existing pause)."""
        until = self.clock() + max(0.0, seconds)
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def acquire(self, key: str, sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait until ``key`` may send, note the send, and return the seconds waited."""
        waited = 0.0
        while (wait := self.wait_time(key)) > 0:
            sleep(wait)
            waited += wait
        self.record(key)
        return waited
