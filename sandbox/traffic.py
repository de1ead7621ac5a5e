"""Live traffic: the dispatcher that really POSTs deliveries (with automatic retries), and the
generator that makes events at ``rate`` per minute.

Dispatcher contract:

- every POST (first attempt, retry, redelivery, test) counts as a push for the webhook's limits;
- a delivery times out after ``timeout_s`` in total (Go's ``Client.Timeout``);
- a live delivery's log entry is written once its first attempt has finished, with
  ``deliveredAt`` = the start of that first attempt, and never moves; automatic retries (up to
  ``retryPolicy.maxRetries``, after ``initialIntervalMs * backoffFactor**n``, on retryable
  statuses, timeouts and connection errors) update that same entry;
- redeliveries and tests make one attempt and a new entry;
- past a push limit (:mod:`sandbox.limits`) nothing is sent and nothing is logged: a live delivery,
  a redelivery or a test raises :class:`PushLimited` (the live generator counts it as held back,
  the API answers 429 RESOURCE_EXHAUSTED with ``Retry-After``); an automatic retry waits until the
  windows have room (checking every few seconds, so an advanced clock frees it too), then goes,
  unless its entry was deleted or expired meanwhile. The entry shows its last outcome while it waits.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from sandbox.clock import NS_PER_MS, SandboxClock
from sandbox.events import EVENT_CODES, Event, Identity, new_event
from sandbox.history import EVENT_WEIGHTS
from sandbox.limits import PushLimiter
from sandbox.model import Headers, WebhookRecord
from sandbox.profiles import TIMEOUT_ERROR, refused_error, status_error
from sandbox.store import MAX_KEY_BITS, DeliveryRow, DeliveryStore, LiveDetails, delivery_id
from sandbox.synth import host_port, response_format
from sandbox.webhooks import WebhookRegistry
from sandbox.wire import encode_body, request_headers

__all__ = ["Dispatcher", "TrafficGenerator", "PushLimited", "Attempt", "RESPONSE_BODY_LIMIT"]

#: Recorded response bodies are cut at 4 KiB.
RESPONSE_BODY_LIMIT = 4096
#: How often a retry held back by a push limit checks again (at most).
RETRY_LIMIT_POLL_S = 5.0


class PushLimited(Exception):
    """A push limit of the webhook is reached; ``retry_after`` is whole seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"push limit reached, retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Attempt:
    """The result of one POST."""

    status: int
    error: str
    retryable: bool
    duration_ms: int
    delivered_to: str
    request_headers: Headers
    response_headers: Headers
    response_body: bytes
    response_format: str

    @property
    def success(self) -> bool:
        """True only for a 2xx answer."""
        return 200 <= self.status < 300


def _canonical(name: str) -> str:
    """Go's canonical header name: ``content-type`` -> ``Content-Type``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        if "connection refused" in str(seen).lower() or "errno 111" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Dispatcher:
    """Sends deliveries and keeps their log entries (see the module docstring)."""

    def __init__(
        self,
        *,
        store: DeliveryStore,
        registry: WebhookRegistry,
        identity: Identity,
        clock: SandboxClock,
        limiter: PushLimiter,
        timeout_s: float,
        seed: int,
        limit_poll_s: float = RETRY_LIMIT_POLL_S,
    ) -> None:
        self._store = store
        self._registry = registry
        self._identity = identity
        self._clock = clock
        self._limiter = limiter
        self._timeout_s = timeout_s
        self._limit_poll_s = limit_poll_s
        self._rng = random.Random(f"{seed}:live")
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.attempts_by_webhook: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def _client(self, verify: bool) -> httpx.AsyncClient:
        client = self._clients.get(verify)
        if client is None:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s),
                verify=verify,
                trust_env=False,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
            self._clients[verify] = client
        return client

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; it is cancelled by :meth:`aclose`."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel deliveries in flight and pending retries, then close the HTTP clients."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # -- sending --------------------------------------------------------------------------------
    def new_key(self) -> int:
        """A fresh row key not used by any stored row."""
        while True:
            key = self._rng.getrandbits(MAX_KEY_BITS)
            if key and not self._store.has_key(key):
                return key

    async def _post(self, webhook: WebhookRecord, key: int, event_type: str, body: bytes) -> Attempt:
        url = webhook.endpoint_url
        headers = request_headers(
            webhook=webhook,
            delivery_id=delivery_id(key),
            event_type=event_type,
            client_id=self._identity.client_id,
            nonce=str(self._rng.randrange(10**17, 10**18)),
            timestamp_ms=self._clock.now_ns() // NS_PER_MS,
            body=body,
        )
        wire_headers = [(name, value) for name, values in headers.items() for value in values]
        self.attempts_by_webhook[webhook.id] = self.attempts_by_webhook.get(webhook.id, 0) + 1
        target = host_port(url)
        status, error, retryable = 0, "", True
        response_headers: Headers = {}
        response_body = b""
        fmt = ""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                client = self._client(webhook.verify_ssl)
                async with client.stream("POST", url, content=body, headers=wire_headers) as response:
                    status = response.status_code
                    stream = response.extensions.get("network_stream")
                    peer = stream.get_extra_info("server_addr") if stream is not None else None
                    if isinstance(peer, tuple) and len(peer) >= 2:
                        target = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
                    for name, value in response.headers.multi_items():
                        response_headers.setdefault(_canonical(name), []).append(value)
                    fmt = response_format(response.headers.get("content-type", "text/plain"))
                    chunks = bytearray()
                    async for chunk in response.aiter_raw():
                        chunks.extend(chunk)
                        if len(chunks) >= RESPONSE_BODY_LIMIT:
                            break
                    response_body = bytes(chunks[:RESPONSE_BODY_LIMIT])
        except (TimeoutError, httpx.TimeoutException):
            status, error = 0, TIMEOUT_ERROR
            response_headers, response_body, fmt = {}, b"", ""
        except httpx.ConnectError as exc:
            error = refused_error(target) if _refused(exc) else f"dial tcp {target}: {exc}"
        except httpx.HTTPError as exc:
            status, error = (
                0,
                "EOF" if isinstance(exc, httpx.RemoteProtocolError) else str(exc) or type(exc).__name__,
            )
            response_headers, response_body, fmt = {}, b"", ""
        except (httpx.InvalidURL, ValueError, OSError) as exc:
            status, error = 0, f"Post {url!r}: {exc}"
            response_headers, response_body, fmt = {}, b"", ""
        duration_ms = int((time.perf_counter() - started) * 1000)
        if status:
            if 200 <= status < 300:
                retryable = False
            else:
                error = status_error(status)
                retryable = status in webhook.retry_policy.retryable_http_codes
        return Attempt(
            status, error, retryable, duration_ms, target, headers, response_headers, response_body, fmt
        )

    def _row(
        self, webhook: WebhookRecord, key: int, event: Event, body: bytes, started_ns: int, attempt: Attempt
    ) -> DeliveryRow:
        return DeliveryRow(
            key=key,
            webhook_idx=webhook.idx,
            event_type=EVENT_CODES[event.type],
            event_seed=0,
            event_at=event.timestamp_ns,
            delivered_at=started_ns,
            duration_ms=attempt.duration_ms,
            status=attempt.status,
            success=attempt.success,
            retry_count=0,
            error=attempt.error,
            live=LiveDetails(
                event_id=event.id,
                request_url=webhook.endpoint_url,
                delivered_to=attempt.delivered_to,
                request_headers=attempt.request_headers,
                request_body=body,
                response_headers=attempt.response_headers,
                response_body=attempt.response_body,
                response_format=attempt.response_format,
            ),
        )

    async def _first_attempt(self, webhook: WebhookRecord, event: Event, body: bytes) -> DeliveryRow:
        key = self.new_key()
        started_ns = self._clock.now_ns()
        attempt = await self._post(webhook, key, event.type, body)
        row = self._row(webhook, key, event, body, started_ns, attempt)
        while not self._store.insert(row):  # a key taken meanwhile: extremely unlikely
            row.key = self.new_key()
        return row

    def reserve(self, webhook: WebhookRecord) -> None:
        """Count one push of ``webhook`` now; PushLimited (and nothing counted) past a limit."""
        wait = self._limiter.acquire(webhook.id, self._clock.now_ns())
        if wait > 0:
            raise PushLimited(PushLimiter.retry_after(wait))

    async def deliver(self, webhook: WebhookRecord, event: Event, *, reserved: bool = False) -> DeliveryRow:
        """A live delivery: first attempt now, retries in the background.

        The first attempt is a push: counted here, or already by :meth:`reserve` when ``reserved``.
        Past a limit it raises PushLimited before sending or logging anything.
        """
        if not reserved:
            self.reserve(webhook)
        body = encode_body(event, webhook.body_shape)
        row = await self._first_attempt(webhook, event, body)
        if not row.success and self._is_retryable(webhook, row) and webhook.retry_policy.max_retries > 0:
            self.spawn(self._retry(webhook.id, row.key, event.type, body))
        return row

    @staticmethod
    def _is_retryable(webhook: WebhookRecord, row: DeliveryRow) -> bool:
        return row.status == 0 or row.status in webhook.retry_policy.retryable_http_codes

    async def send_once(self, webhook: WebhookRecord, event: Event, body: bytes | None = None) -> DeliveryRow:
        """One attempt and a new log entry (redelivery, test); PushLimited past a limit."""
        self.reserve(webhook)
        return await self._first_attempt(
            webhook, event, body if body is not None else encode_body(event, webhook.body_shape)
        )

    async def _retry(self, webhook_id: str, key: int, event_type: str, body: bytes) -> None:
        for n in itertools.count(1):
            webhook = self._registry.find(webhook_id)
            if webhook is None or n > webhook.retry_policy.max_retries:
                return
            await asyncio.sleep(webhook.retry_policy.delay_ms(n) / 1000)
            while (wait := self._limiter.acquire(webhook_id, self._clock.now_ns())) > 0:
                # Past a limit the retry waits (it is not dropped); re-checked every few seconds.
                await asyncio.sleep(min(wait, self._limit_poll_s))
                if self._registry.find(webhook_id) is None or not self._store.has_key(key):
                    return  # deleted or expired while waiting: nothing left to retry
            webhook = self._registry.find(webhook_id)
            if webhook is None:
                return
            attempt = await self._post(webhook, key, event_type, body)
            row = self._store.get(key)
            if row is None or row.live is None:  # purged or deleted meanwhile
                return
            row.retry_count = n
            row.status = attempt.status
            row.success = attempt.success
            row.error = attempt.error
            row.duration_ms = attempt.duration_ms
            row.live.delivered_to = attempt.delivered_to
            row.live.request_headers = attempt.request_headers
            row.live.response_headers = attempt.response_headers
            row.live.response_body = attempt.response_body
            row.live.response_format = attempt.response_format
            self._store.update_outcome(row)
            if attempt.success or not attempt.retryable:
                return

    def new_event(self, event_type: str, payload: dict[str, Any] | None = None) -> Event:
        """A fresh event happening now."""
        return new_event(self._rng, event_type, self._clock.now_ns(), self._identity.company_id, payload)


class TrafficGenerator:
    """Makes events at ``rate`` per minute (Poisson arrivals) for the active webhooks."""

    def __init__(
        self,
        *,
        rate_per_minute: float,
        dispatcher: Dispatcher,
        registry: WebhookRegistry,
        clock: SandboxClock,
        seed: int,
    ) -> None:
        self.rate_per_minute = rate_per_minute
        self.paused = False
        self.generated = 0
        self.held_back = 0
        self._dispatcher = dispatcher
        self._registry = registry
        self._clock = clock
        self._rng = random.Random(f"{seed}:traffic")

    def _pick(self) -> tuple[WebhookRecord, str] | None:
        active = [w for w in self._registry.all() if w.is_active and w.event_types]
        if not active:
            return None
        webhook = self._rng.choice(active)
        types = webhook.event_types
        weights = [EVENT_WEIGHTS.get(t, 1.0) for t in types]
        return webhook, self._rng.choices(types, weights=weights)[0]

    async def run(self) -> None:
        """Generate until cancelled."""
        while True:
            if self.paused or self.rate_per_minute <= 0:
                await asyncio.sleep(0.25)
                continue
            await asyncio.sleep(min(30.0, self._rng.expovariate(self.rate_per_minute / 60.0)))
            if self.paused:
                continue
            picked = self._pick()
            if picked is None:
                continue
            webhook, event_type = picked
            try:
                # Counted now, before anything else can take the last slot: past a limit the
                # event is held back (not sent, not logged), as MoeGo holds back pushes.
                self._dispatcher.reserve(webhook)
            except PushLimited:
                self.held_back += 1
                continue
            self.generated += 1
            event = self._dispatcher.new_event(event_type)
            self._dispatcher.spawn(self._dispatcher.deliver(webhook, event, reserved=True))
