"""The clock skew between this host and MoeGo, measured from the ``Date`` header of MoeGo's answers.

Every window the collector reads is in MoeGo's time: which entries exist, which ones MoeGo's
15-day retention has deleted, and which are still being logged. A host clock ahead of MoeGo's
would skip the oldest minutes of the window and record coverage MoeGo has not finished writing;
one behind would re-read what is already covered. So each pass measures the skew on its first
answer and runs on ``host time + skew``.

``Date`` carries whole seconds, so skews below :data:`TOLERANCE` are not corrected. A skew beyond
:data:`MAX_CORRECTION` is not believed (nor applied): it is recorded, and ``status`` warns of any
skew beyond :data:`WARN_AFTER`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Protocol

__all__ = ["TOLERANCE", "MAX_CORRECTION", "WARN_AFTER", "Reading", "measure", "correction", "warning", "describe"]

#: Skews smaller than this are the Date header's resolution and the network's latency: not corrected.
TOLERANCE = timedelta(seconds=2)
#: A skew beyond this is not applied (a broken clock or a broken header, not a drift to correct).
MAX_CORRECTION = timedelta(days=1)
#: ``status`` warns when the last pass measured a skew beyond this.
WARN_AFTER = timedelta(seconds=30)


class Reading(Protocol):
    """MoeGo's clock as one answer told it (:class:`collectors.client.ServerTime`)."""

    @property
    def date(self) -> datetime: ...

    @property
    def received(self) -> float: ...


def measure(server: Reading | None, host_time_at: Callable[[float], datetime]) -> timedelta | None:
    """MoeGo's clock minus this host's, or ``None`` without a reading.

    ``host_time_at`` turns the reading's ``time.monotonic()`` into this host's (aware) time then.
    Half a second is added because ``Date`` is rounded down to the second.
    """
    if server is None:
        return None
    return (server.date - host_time_at(server.received)) + timedelta(milliseconds=500)  # never past datetime.max


def correction(skew: timedelta | None) -> timedelta:
    """What to add to this host's time to get MoeGo's: the skew, unless it is too small or too large to apply."""
    if skew is None or abs(skew) < TOLERANCE or abs(skew) > MAX_CORRECTION:
        return timedelta(0)
    return skew


def warning(seconds: float | None) -> str | None:
    """The one line ``status`` shows for a measured skew beyond :data:`WARN_AFTER`, else ``None``."""
    if seconds is None or abs(seconds) <= WARN_AFTER.total_seconds():
        return None
    applied = abs(seconds) <= MAX_CORRECTION.total_seconds()
    return (f"{describe(seconds)}: the collector "
            f"{'corrects its windows by it' if applied else 'cannot correct a skew this large'}; "
            "set this host's time right (NTP)")


def describe(seconds: float) -> str:
    """``this host's clock is 10 min ahead of MoeGo's`` for a skew of -600 s (MoeGo minus host)."""
    size = abs(seconds)
    amount = f"{size:.0f} s" if size < 120 else (f"{size / 60:.0f} min" if size < 7200 else f"{size / 3600:.1f} h")
    return f"this host's clock is {amount} {'ahead of' if seconds < 0 else 'behind'} MoeGo's"
