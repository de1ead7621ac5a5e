"""The running sandbox: every component, wired together, and its background tasks.

Built once by :func:`sandbox.server.serve` after the listening sockets are bound (seeded webhook
endpoints need the receiver's port), read by the API, admin and receiver apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Any

from sandbox.clock import NS_PER_DAY, NS_PER_SECOND, SandboxClock
from sandbox.events import Identity
from sandbox.faults import FaultInjector
from sandbox.history import RETENTION_DAYS, WebhookSpec, seed_history
from sandbox.limits import PER_DAY, PushLimiter
from sandbox.receiver import ReceivedLog
from sandbox.relay import FlappingRelay
from sandbox.store import DeliveryStore
from sandbox.traffic import Dispatcher, TrafficGenerator
from sandbox.webhooks import WebhookRegistry

__all__ = ["RuntimeConfig", "Runtime", "READONLY_SUFFIX", "RETENTION_SWEEP_S"]

#: The read-only API key is the API key followed by this suffix.
READONLY_SUFFIX = "-readonly"
#: How often retention removes expired entries.
RETENTION_SWEEP_S = 2.0


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime needs from the options, plus where things listen."""

    seed: int
    history_days: int
    rate: float
    volume: str
    api_key: str
    delivery_timeout_s: float
    api_base_url: str
    receiver_base_url: str
    daily_limit: int = PER_DAY
    body_shape: str = "guide"
    latency_ms: float = 0.0  # added before every API answer (SandboxOptions.latency_ms)


class Runtime:
    """All sandbox state: clock, webhooks, delivery log, limits, faults, traffic."""

    def __init__(self, config: RuntimeConfig, relay_sock: socket.socket, receiver_port: int) -> None:
        self.config = config
        self.api_key = config.api_key
        self.readonly_key = config.api_key + READONLY_SUFFIX
        self.clock = SandboxClock()
        self.identity = Identity.from_seed(config.seed)
        self.registry = WebhookRegistry(
            seed=config.seed, company_id=self.identity.company_id, body_shape=config.body_shape
        )
        self.store = DeliveryStore()
        self.limiter = PushLimiter(per_day=config.daily_limit)
        self.faults = FaultInjector()
        self.received = ReceivedLog()
        self.relay = FlappingRelay(relay_sock, receiver_port, seed=config.seed)
        self.dispatcher = Dispatcher(
            store=self.store,
            registry=self.registry,
            identity=self.identity,
            clock=self.clock,
            limiter=self.limiter,
            timeout_s=config.delivery_timeout_s,
            seed=config.seed,
        )
        self.generator = TrafficGenerator(
            rate_per_minute=config.rate,
            dispatcher=self.dispatcher,
            registry=self.registry,
            clock=self.clock,
            seed=config.seed,
        )
        self._background: list[asyncio.Task[Any]] = []
        self.purged = 0

    # -- seeding --------------------------------------------------------------------------------
    def seed(self) -> None:
        """Create the seeded webhooks and their history (blocking; before serving)."""
        now = self.clock.now_ns()
        anchor = now - now % (60 * NS_PER_SECOND)

        def endpoint(spec: WebhookSpec) -> str:
            if spec.relay:
                return f"http://{self.relay.host}:{self.relay.port}/hooks/{spec.label}"
            return f"{self.config.receiver_base_url}/hooks/{spec.label}"

        seed_history(
            seed=self.config.seed,
            volume=self.config.volume,
            history_days=self.config.history_days,
            anchor_ns=anchor,
            registry=self.registry,
            store=self.store,
            endpoint_for=endpoint,
            timeout_ms=int(self.config.delivery_timeout_s * 1000),
            limiter=self.limiter,  # history respects the limits; its last day starts counted
        )
        self.purge()

    # -- retention ------------------------------------------------------------------------------
    def retention_floor(self) -> int:
        """The oldest ``deliveredAt`` still kept: 15 days before the sandbox clock."""
        return self.clock.now_ns() - RETENTION_DAYS * NS_PER_DAY

    def purge(self) -> int:
        """Delete expired entries now; returns how many."""
        removed = self.store.purge(self.retention_floor(), [w.idx for w in self.registry.all()])
        self.purged += removed
        return removed

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_SWEEP_S)
            self.purge()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start retention sweeps, the relay and live traffic."""
        await self.relay.up()
        for coro in (self._sweep(), self.relay.run(), self.generator.run()):
            self._background.append(asyncio.ensure_future(coro))

    async def stop(self) -> None:
        """Stop background tasks and deliveries in flight; close connections."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self.dispatcher.aclose()
        with contextlib.suppress(Exception):
            await self.relay.down()

    def close(self) -> None:
        """Release the delivery store."""
        self.store.close()
