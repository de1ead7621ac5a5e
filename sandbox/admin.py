"""Sandbox-only controls under ``/_sandbox/`` (not part of MoeGo's API; no auth; loopback only).

- ``GET  /_sandbox/health``: readiness, plus the API and receiver URLs and the sandbox time;
- ``GET|POST|DELETE /_sandbox/faults``: list, add (see :mod:`sandbox.faults`) or clear fault rules;
- ``GET|POST /_sandbox/clock``: read, or jump ahead with ``{"advanceSeconds": S}`` (retention runs at once);
- ``POST /_sandbox/traffic``: ``{"paused": bool, "rate": per-minute?}``;
- ``GET  /_sandbox/stats``: entries, failures and pushes per webhook, totals;
- ``POST /_sandbox/generate``: ``{"webhookId", "count", "failRate"?, "spreadSeconds"?, "eventType"?}``
  synthesizes ``count`` entries delivered over the last ``spreadSeconds`` (default 3600); they are
  test data, not pushes, and bypass the push limits;
- ``POST /_sandbox/emit``: ``{"webhookId", "eventType"?}`` sends one live event now (with automatic
  retries) and returns its entry after the first attempt; 429 with ``Retry-After`` past a push limit;
- ``GET  /_sandbox/received?deliveryId=ID`` (or ``?limit=N``): what the built-in receiver got;
- ``POST /_sandbox/deliveries:mutate``: ``{"id", "success"?, "responseStatus"?, "retryCount"?,
  "error"?, "durationMs"?}`` rewrites an entry's outcome (as a late retry would).
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.errors import ApiError, error_response
from sandbox.events import EVENT_CODES
from sandbox.faults import FaultSpecError
from sandbox.history import synthetic_rows
from sandbox.protojson import delivery_json, format_timestamp
from sandbox.store import parse_delivery_id
from sandbox.synth import materialize
from sandbox.traffic import PushLimited
from sandbox.webhooks import is_loopback_host

__all__ = ["admin_routes", "MAX_GENERATE"]

MAX_GENERATE = 500_000
Endpoint = Callable[[Request], Awaitable[Response]]


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def _number(body: dict[str, Any], key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key}: expected a number")
    return float(value)


def admin_routes(rt: Any) -> list[Route]:
    """The ``/_sandbox/`` routes for runtime ``rt`` (a :class:`sandbox.runtime.Runtime`)."""

    def control(handler: Callable[[Request], Awaitable[Response]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            client = request.client.host if request.client else ""
            if not is_loopback_host(client):
                return _bad("sandbox controls are reachable from loopback only", 403)
            try:
                return await handler(request)
            except (ValueError, FaultSpecError) as exc:
                return _bad(str(exc))
            except ApiError as err:
                return error_response(err)

        return endpoint

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "apiBaseUrl": rt.config.api_base_url,
                "receiverUrl": rt.config.receiver_base_url,
                "now": format_timestamp(rt.clock.now_ns()),
                "volume": rt.config.volume,
                "seed": rt.config.seed,
                "bodyShape": rt.config.body_shape,
            }
        )

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            rt.faults.add(await _json(request))
        elif request.method == "DELETE":
            rt.faults.clear()
        return JSONResponse({"pending": rt.faults.pending()})

    async def clock(request: Request) -> Response:
        purged = 0
        if request.method == "POST":
            body = await _json(request)
            rt.clock.advance(_number(body, "advanceSeconds"))
            purged = rt.purge()
        return JSONResponse(
            {
                "now": format_timestamp(rt.clock.now_ns()),
                "offsetSeconds": rt.clock.offset_seconds,
                "purged": purged,
            }
        )

    async def traffic(request: Request) -> Response:
        body = await _json(request)
        if "paused" in body:
            if not isinstance(body["paused"], bool):
                raise ValueError("paused: expected true or false")
            rt.generator.paused = body["paused"]
        if "rate" in body:
            rate = _number(body, "rate")
            if rate < 0:
                raise ValueError("rate: must be >= 0")
            rt.generator.rate_per_minute = rate
        return JSONResponse({"paused": rt.generator.paused, "rate": rt.generator.rate_per_minute})

    async def stats(request: Request) -> Response:
        now = rt.clock.now_ns()
        counts = rt.store.counts(rt.retention_floor())
        webhooks = {}
        for w in rt.registry.all():
            total, failed = counts.get(w.idx, (0, 0))
            minute, day = rt.limiter.usage(w.id, now)
            webhooks[w.id] = {
                "label": w.label,
                "profile": w.profile,
                "bodyShape": w.body_shape,
                "isActive": w.is_active,
                "deliveries": total,
                "failed": failed,
                "pushes": rt.dispatcher.attempts_by_webhook.get(w.id, 0),
                "pushesLastMinute": minute,
                "pushesLastDay": day,
            }
        return JSONResponse(
            {
                "now": format_timestamp(now),
                "webhooks": webhooks,
                "deliveries": sum(v["deliveries"] for v in webhooks.values()),
                "totalPushes": sum(rt.dispatcher.attempts_by_webhook.values()),
                "received": rt.received.total,
                "purged": rt.purged,
                "generated": rt.generator.generated,
                "heldBack": rt.generator.held_back,
                "paused": rt.generator.paused,
                "relayUp": rt.relay.is_up,
            }
        )

    async def generate(request: Request) -> Response:
        body = await _json(request)
        webhook = rt.registry.get(str(body.get("webhookId", "")))
        count = int(_number(body, "count"))
        fail_rate = _number(body, "failRate", 0.0)
        spread = _number(body, "spreadSeconds", 3600.0)
        event_type = body.get("eventType")
        if not 0 < count <= MAX_GENERATE:
            raise ValueError(f"count: 1..{MAX_GENERATE}")
        if not 0.0 <= fail_rate <= 1.0 or spread < 0:
            raise ValueError("failRate: 0..1; spreadSeconds: >= 0")
        if event_type is not None and event_type not in EVENT_CODES:
            raise ValueError(f"eventType: unknown {event_type!r}")
        now = rt.clock.now_ns()
        rng = random.Random(rt.dispatcher.new_key())
        rows = synthetic_rows(
            webhook,
            rng,
            count=count,
            fail_rate=fail_rate,
            start_ns=now - int(spread * 1e9),
            end_ns=now,
            timeout_ms=int(rt.config.delivery_timeout_s * 1000),
            event_type=event_type,
        )
        added = rt.store.bulk_load(rows, build_indexes=False)
        return JSONResponse({"generated": added, "webhookId": webhook.id})

    async def emit(request: Request) -> Response:
        body = await _json(request)
        webhook = rt.registry.get(str(body.get("webhookId", "")))
        event_type = body.get("eventType") or next(
            (t for t in webhook.event_types if t != "HEALTH_CHECK"), "HEALTH_CHECK"
        )
        if event_type not in EVENT_CODES:
            raise ValueError(f"eventType: unknown {event_type!r}")
        try:
            row = await rt.dispatcher.deliver(webhook, rt.dispatcher.new_event(event_type))
        except PushLimited as exc:
            return JSONResponse(
                {"error": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)}
            )
        return JSONResponse(delivery_json(materialize(row, webhook, rt.identity)))

    async def received(request: Request) -> Response:
        delivery_id = request.query_params.get("deliveryId")
        if delivery_id:
            items = rt.received.for_delivery(delivery_id)
        else:
            items = rt.received.recent(int(request.query_params.get("limit", "50")))
        return JSONResponse({"requests": [r.to_json() for r in items]})

    async def mutate(request: Request) -> Response:
        body = await _json(request)
        key = parse_delivery_id(str(body.get("id", "")))
        row = rt.store.get(key) if key is not None else None
        webhook = rt.registry.by_idx(row.webhook_idx) if row is not None else None
        if row is None or webhook is None:
            return _bad("no such delivery", 404)
        if "success" in body:
            row.success = bool(body["success"])
        if "responseStatus" in body:
            row.status = int(_number(body, "responseStatus"))
        if "retryCount" in body:
            row.retry_count = int(_number(body, "retryCount"))
        if "durationMs" in body:
            row.duration_ms = int(_number(body, "durationMs"))
        if "error" in body:
            row.error = str(body["error"] or "")
        rt.store.update_outcome(row)
        return JSONResponse(delivery_json(materialize(row, webhook, rt.identity)))

    return [
        Route("/_sandbox/health", control(health), methods=["GET"]),
        Route("/_sandbox/faults", control(faults), methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/clock", control(clock), methods=["GET", "POST"]),
        Route("/_sandbox/traffic", control(traffic), methods=["POST"]),
        Route("/_sandbox/stats", control(stats), methods=["GET"]),
        Route("/_sandbox/generate", control(generate), methods=["POST"]),
        Route("/_sandbox/emit", control(emit), methods=["POST"]),
        Route("/_sandbox/received", control(received), methods=["GET"]),
        Route("/_sandbox/deliveries:mutate", control(mutate), methods=["POST"]),
    ]
