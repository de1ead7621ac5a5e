"""The sandbox clock: wall-clock time plus an offset that only moves forward.

Everything time-dependent in the sandbox (retention, new deliveries, push limits, page cut-offs)
reads this clock, so ``POST /_sandbox/clock {"advanceSeconds": S}`` moves all of them together.
Times are integers of nanoseconds since the Unix epoch (UTC), the precision of proto3 timestamps.
"""

from __future__ import annotations

import time

__all__ = ["SandboxClock", "NS_PER_SECOND", "NS_PER_MS", "NS_PER_DAY"]

NS_PER_MS = 1_000_000
NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND


class SandboxClock:
    """Wall-clock nanoseconds shifted by an adjustable, never negative, offset."""

    def __init__(self) -> None:
        self._offset_ns = 0

    def now_ns(self) -> int:
        """The sandbox time now, in nanoseconds since the epoch."""
        return time.time_ns() + self._offset_ns

    @property
    def offset_seconds(self) -> float:
        """How far the sandbox clock runs ahead of the wall clock."""
        return self._offset_ns / NS_PER_SECOND

    def advance(self, seconds: float) -> int:
        """Jump ahead by ``seconds`` (>= 0) and return the new time; going back is refused."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset_ns += int(seconds * NS_PER_SECOND)
        return self.now_ns()
