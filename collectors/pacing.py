"""One pace for every worker of a collect pass: a 429 pauses them all, and lowers how many call at once.

:class:`Pacer` is shared by the threads of one pass (through :attr:`collectors.client.MoeGoClient.pacer`):

- **A gate.** Before each call a worker :meth:`~Pacer.acquire` s a slot. When MoeGo answers 429
  RESOURCE_EXHAUSTED, :meth:`~Pacer.limited` closes the gate for everyone: for ``Retry-After`` when
  MoeGo sent one, else for an exponential backoff with full jitter (the n-th pause in a row waits up
  to ``base * 2^(n-1)``, capped at ``max_delay``). No call is started while the gate is closed;
  calls already on the wire finish. A 429 arriving while the gate is closed extends the pause, never
  shortens it.
- **AIMD.** At most ``limit`` calls are in flight. The first 429 of a pause halves ``limit`` (never
  below 1); every ``grow_after`` successful calls in a row add one back, up to the configured
  concurrency. Each change is logged as one line on :data:`log`.

``pauses`` records every pause (monotonic start and end), for the pass's summary and for tests.
The clock is injectable (``clock``), as is the randomness (``rng``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Pacer", "Pause", "GateClosedPastDeadline", "log"]

log = logging.getLogger("moego_monitor.pacing")


class GateClosedPastDeadline(Exception):
    """The gate (or a free slot) would come later than the call's deadline."""


@dataclass
class Pause:
    """One closing of the gate: from ``start`` to ``end`` (``time.monotonic()`` values), and why."""

    start: float
    end: float
    retry_after: float | None

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Pacer:
    """The gate and the AIMD limit of one pass (see the module docstring)."""

    concurrency: int
    grow_after: int = 20
    base_delay: float = 0.5
    max_delay: float = 30.0
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    limit: int = field(init=False)
    lowest: int = field(init=False)
    pauses: list[Pause] = field(default_factory=list, init=False)
    in_flight: int = field(default=0, init=False)
    _until: float = field(default=0.0, init=False)
    _streak: int = field(default=0, init=False)
    _closings: int = field(default=0, init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.limit = self.lowest = self.concurrency

    def acquire(self, end: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait until the gate is open and fewer than ``limit`` calls are in flight, then take a slot.

        Raises :class:`GateClosedPastDeadline` when that would be after ``end`` (a monotonic time).
        ``sleep`` waits out a closed gate (a collector's stop event cuts it short: the call then goes).
        """
        while True:
            with self._cond:
                now = self.clock()
                closed_for = self._until - now
                if closed_for <= 0 and self.in_flight < self.limit:
                    self.in_flight += 1
                    return
                if now + max(closed_for, 0.0) >= end:
                    raise GateClosedPastDeadline()
                if closed_for <= 0:  # open, but every slot is taken: wait for a release
                    self._cond.wait(timeout=min(end - now, 1.0))
                    continue
            sleep(closed_for)
            if self.clock() < now + closed_for - 1e-3:
                # ``sleep`` returned early: the pass is stopping. Take a slot at once; the page boundary ends it.
                with self._cond:
                    self.in_flight += 1
                    return

    def release(self, *, ok: bool) -> None:
        """Give the slot back after a call; ``ok`` when MoeGo answered it successfully."""
        with self._cond:
            self.in_flight = max(0, self.in_flight - 1)
            if ok:
                self._closings = 0
                self._streak += 1
                if self._streak >= self.grow_after and self.limit < self.concurrency:
                    self._streak = 0
                    self.limit += 1
                    log.info("MoeGo accepts calls again: concurrency %d -> %d", self.limit - 1, self.limit)
            self._cond.notify_all()

    def limited(self, retry_after: float | None) -> float:
        """MoeGo answered 429: close the gate for everyone; returns how long it stays closed from now."""
        with self._cond:
            now = self.clock()
            if retry_after is not None:
                wait = max(0.0, retry_after)
            else:
                self._closings += 1
                wait = self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (self._closings - 1)))
            self._streak = 0
            if now < self._until:  # already paused: extend, do not halve again
                if now + wait > self._until:
                    self._until = now + wait
                    self.pauses[-1].end = self._until
                return self._until - now
            before = self.limit
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._until = now + wait
            self.pauses.append(Pause(now, self._until, retry_after))
            why = f"Retry-After {retry_after:g}s" if retry_after is not None else "backoff"
            log.warning("MoeGo is limiting the rate (429 RESOURCE_EXHAUSTED): every worker pauses %.1fs (%s); "
                        "concurrency %d -> %d", wait, why, before, self.limit)
            self._cond.notify_all()
            return wait

    def summary(self) -> str | None:
        """One line about the pauses of the pass, or ``None`` when MoeGo never limited it."""
        if not self.pauses:
            return None
        total = sum(p.seconds for p in self.pauses)
        return (f"MoeGo limited the rate {len(self.pauses)} time{'s' if len(self.pauses) != 1 else ''}: every worker "
                f"paused {total:.1f}s in all; concurrency went down to {self.lowest} of {self.concurrency}")
