"""The built-in receiver: a Starlette app on loopback that answers webhook POSTs like real endpoints.

The path selects the behaviour:

- ``/hooks/<label>`` for a seeded webhook (``orders-sync``, ``crm-bridge``, ...): that webhook's
  health profile (see :mod:`sandbox.profiles`); ``/hooks/profile/<name>`` for a profile by name
  (``healthy``, ``flaky``, ``failing``, ``slow``);
- ``/hooks/ok``: always 200; ``/hooks/status/<code>``: always ``code``;
- ``/hooks/slow/<ms>``: 200 after ``ms`` milliseconds; ``/hooks/timeout``: answers only after the
  delivery timeout has passed;
- ``/hooks/fail-first/<n>``: 503 for the first ``n`` attempts of each ``X-Moe-Delivery-ID``, then 200.

Every request is first checked: its ``X-Moe-Webhook-ID`` must name a webhook, and when that webhook
has a secret token both signatures must verify with :func:`collectors.signature.verify_request`;
otherwise the answer is 401. Every request is recorded (last 5,000) for tests to inspect.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collectors.signature import verify_request
from sandbox.history import FULL_SPECS
from sandbox.profiles import PROFILES, Profile, canned_response
from sandbox.webhooks import WebhookRegistry

__all__ = ["ReceivedRequest", "ReceivedLog", "build_receiver_app", "LABEL_PROFILES"]

#: Seeded webhook labels and the profile their receiver path answers with.
LABEL_PROFILES: dict[str, str] = {spec.label: spec.profile for spec in FULL_SPECS}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver got it."""

    path: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int
    received_ns: int

    @property
    def delivery_id(self) -> str:
        """The ``X-Moe-Delivery-ID`` header ('' if absent)."""
        for name, value in self.headers:
            if name.lower() == "x-moe-delivery-id":
                return value
        return ""

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``GET /_sandbox/received``."""
        return {
            "path": self.path,
            "headers": [[n, v] for n, v in self.headers],
            "body": base64.b64encode(self.body).decode(),
            "status": self.status,
            "receivedAtNs": str(self.received_ns),
        }


class ReceivedLog:
    """The most recent requests the receiver answered."""

    def __init__(self, size: int = 5000) -> None:
        self._items: deque[ReceivedRequest] = deque(maxlen=size)
        self.total = 0

    def add(self, item: ReceivedRequest) -> None:
        """Record a request."""
        self._items.append(item)
        self.total += 1

    def for_delivery(self, delivery_id: str) -> list[ReceivedRequest]:
        """Every recorded request carrying this ``X-Moe-Delivery-ID``, oldest first."""
        return [r for r in self._items if r.delivery_id == delivery_id]

    def recent(self, limit: int) -> list[ReceivedRequest]:
        """The last ``limit`` requests, oldest first."""
        return list(self._items)[-limit:]


class _Attempts:
    """How many times each delivery id was seen (bounded LRU)."""

    def __init__(self, size: int = 20_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._size = size

    def next(self, delivery_id: str) -> int:
        count = self._seen.pop(delivery_id, 0) + 1
        self._seen[delivery_id] = count
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return count


def build_receiver_app(
    *,
    registry: WebhookRegistry,
    delivery_timeout_s: float,
    seed: int,
    log: ReceivedLog,
    closing: asyncio.Event,
) -> Starlette:
    """The receiver app; ``delivery_timeout_s`` tells it how long "too slow" must be.

    Setting ``closing`` cuts every pending delay short (the answer becomes 503), so that the
    server can stop at once.
    """
    rng = random.Random(f"{seed}:receiver")
    attempts = _Attempts()

    def profile_answer(profile: Profile, attempt: int) -> tuple[int, float]:
        fails = rng.random() < (
            profile.first_failure_rate if attempt == 1 else 1 - profile.retry_success_rate
        )
        if not fails:
            return profile.success_status, profile.latency_ms(rng) / 1000
        kind = profile.pick_failure(rng, live=True)
        if kind == "timeout":
            return 200, delivery_timeout_s + 1.0
        return int(kind), profile.latency_ms(rng) / 1000

    def behaviour(path: str, attempt: int) -> tuple[int, float] | None:
        parts = path.strip("/").split("/")
        try:
            if parts == ["ok"]:
                return 200, 0.0
            if parts[0] == "status" and len(parts) == 2:
                code = int(parts[1])
                return (code, 0.0) if 200 <= code <= 599 else None
            if parts == ["timeout"]:
                return 200, delivery_timeout_s + 1.0
            if parts[0] == "slow" and len(parts) == 2:
                return 200, max(0, int(parts[1])) / 1000
            if parts[0] == "fail-first" and len(parts) == 2:
                return (503, 0.0) if attempt <= int(parts[1]) else (200, 0.0)
        except ValueError:
            return None
        if parts[0] == "profile" and len(parts) == 2 and parts[1] in PROFILES:
            return profile_answer(PROFILES[parts[1]], attempt)
        if len(parts) == 1 and parts[0] in LABEL_PROFILES:
            return profile_answer(PROFILES[LABEL_PROFILES[parts[0]]], attempt)
        return None

    def authentic(request: Request, body: bytes) -> bool:
        webhook = registry.find(request.headers.get("x-moe-webhook-id", ""))
        if webhook is None:
            return False
        if not webhook.secret_token:
            return True
        headers = dict(request.headers)
        return verify_request(webhook.secret_token, headers, body, algorithm="sha256") and verify_request(
            webhook.secret_token, headers, body, algorithm="sha1"
        )

    async def hook(request: Request) -> Response:
        body = await request.body()
        path = request.path_params["path"]
        if not authentic(request, body):
            status, delay = 401, 0.0
        else:
            answer = behaviour(path, attempts.next(request.headers.get("x-moe-delivery-id", "")))
            status, delay = answer if answer is not None else (404, 0.0)
        log.add(ReceivedRequest(path, list(request.headers.items()), body, status, time.time_ns()))
        if delay and not closing.is_set():
            try:
                await asyncio.wait_for(closing.wait(), delay)
                status = 503
            except TimeoutError:
                pass
        content_type, payload = canned_response(status)
        return Response(payload, status_code=status, media_type=content_type)

    return Starlette(routes=[Route("/hooks/{path:path}", hook, methods=["POST"])])
