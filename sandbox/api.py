"""MoeGo's WebhookService over HTTP: routes, auth, request validation, responses.

Every ``/v1`` call: injected faults first (:mod:`sandbox.faults`), then auth
(``Authorization: Basic base64(api key)``; missing or wrong is UNAUTHENTICATED; the read-only key,
``<api key>-readonly``, may read but writes are PERMISSION_DENIED), then the call itself.
A body that is not a JSON object is INVALID_ARGUMENT. Unknown paths are NOT_FOUND, a known path
with the wrong method UNIMPLEMENTED, both with the gRPC error body.
"""

from __future__ import annotations

import asyncio

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.admin import admin_routes
from sandbox.errors import ApiError, Code, error_response, invalid_argument, not_found
from sandbox.events import EVENT_CODES, EVENT_NAMES, Event
from sandbox.pagination import decode_token, encode_token, read_pagination, request_hash
from sandbox.protojson import (
    delivery_json,
    read_bool,
    read_bytes,
    read_interval,
    read_object,
    read_str,
    webhook_json,
)
from sandbox.runtime import Runtime
from sandbox.store import DeliveryQuery, DeliveryRow, parse_delivery_id
from sandbox.synth import event_type_name, materialize, stored_body
from sandbox.traffic import PushLimited

__all__ = ["build_api_app"]

Handler = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]


def _event_type_filter(raw: Any, name: str) -> tuple[int, ...] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise invalid_argument(f"{name}: expected a list of event type names")
    codes = []
    for value in raw:
        if isinstance(value, str) and value in EVENT_CODES:
            codes.append(EVENT_CODES[value])
        elif isinstance(value, int) and not isinstance(value, bool) and value in EVENT_NAMES:
            codes.append(value)
        else:
            raise invalid_argument(f"{name}: unknown event type {value!r}")
    return tuple(sorted(set(codes)))


def _malformed(result: dict[str, Any], kind: str) -> Response:
    """A 200 answer whose body is broken the way ``kind`` says (fault injection)."""
    if kind == "invalid_json":
        text = json.dumps(result, separators=(",", ":"))
        return Response(text[: max(1, len(text) // 2)], media_type="application/json")
    broken: dict[str, Any] = {"nextPageToken": 12345}
    for key in ("deliveries", "webhooks"):
        if key in result or not result:
            items = result.get(key) or []
            if items:
                first = dict(items[0])
                first.update({"id": 42, "success": "false", "durationMs": {"ms": 1}, "isActive": "yes"})
                broken[key] = [first, *items[1:]]
            else:
                broken[key] = "none"
    return JSONResponse(broken)


def build_api_app(rt: Runtime) -> Any:
    """The API app of a runtime: MoeGo's ``/v1`` routes plus the ``/_sandbox`` controls."""

    def authorize(request: Request, write: bool) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        key = ""
        if scheme.lower() == "basic" and credentials:
            try:
                key = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                key = ""
        if key and hmac.compare_digest(key.encode(), rt.api_key.encode()):
            return
        if key and hmac.compare_digest(key.encode(), rt.readonly_key.encode()):
            if write:
                raise ApiError(Code.PERMISSION_DENIED, "this API key is read-only")
            return
        raise ApiError(Code.UNAUTHENTICATED, "missing or invalid API key")

    async def read_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise invalid_argument(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise invalid_argument("request body must be a JSON object")
        return body

    def rpc(
        handler: Handler, *, write: bool = False, listing: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            path = request.url.path
            if rt.config.latency_ms:  # the network between MoeGo and its caller; answers overlap while waiting
                await asyncio.sleep(rt.config.latency_ms / 1000)
            try:
                fault = rt.faults.take_error(path)
                if fault is not None:
                    raise fault
                authorize(request, write)
                body = await read_body(request) if request.method in ("POST", "PUT") else {}
                result = await handler(request, body)
            except ApiError as err:
                return error_response(err)
            if listing:
                kind = rt.faults.take_malformed(path)
                if kind is not None:
                    return _malformed(result, kind)
            return JSONResponse(result)

        return endpoint

    def delivery_out(row: DeliveryRow) -> dict[str, Any]:
        webhook = rt.registry.by_idx(row.webhook_idx)
        if webhook is None:
            raise not_found(f"delivery {row.key} not found")
        return delivery_json(materialize(row, webhook, rt.identity))

    def find_row(delivery_id: str) -> DeliveryRow:
        key = parse_delivery_id(delivery_id)
        row = rt.store.get(key) if key is not None else None
        if (
            row is None
            or row.delivered_at < rt.retention_floor()
            or rt.registry.by_idx(row.webhook_idx) is None
        ):
            raise not_found(f"webhook delivery {delivery_id!r} not found")
        return row

    # -- webhooks -------------------------------------------------------------------------------
    async def create_webhook(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return webhook_json(rt.registry.create(body, rt.clock.now_ns()))

    async def get_webhook(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return webhook_json(rt.registry.get(request.path_params["id"]))

    async def update_webhook(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return webhook_json(rt.registry.update(request.path_params["id"], body, rt.clock.now_ns()))

    async def delete_webhook(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        webhook = rt.registry.delete(request.path_params["id"])
        rt.store.delete_webhook(webhook.idx)
        rt.limiter.forget(webhook.id)
        return {}

    async def list_webhooks(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        page = read_pagination(body)
        filt = read_object(body, "filter") or {}
        is_active = read_bool(filt, "isActive", "filter.isActive")
        types = _event_type_filter(filt.get("eventTypes"), "filter.eventTypes")
        created = read_interval(filt, "createdTime")
        updated = read_interval(filt, "updatedTime")
        scope = request_hash({"a": is_active, "t": types, "c": created, "u": updated})
        after = decode_token(page.token, scope, (int, str)) if page.token else None

        def keep(w: Any) -> bool:
            if is_active is not None and w.is_active != is_active:
                return False
            if types is not None and not any(EVENT_CODES.get(t) in types for t in w.event_types):
                return False
            for interval, value in ((created, w.created_ns), (updated, w.updated_ns)):
                if interval is not None:
                    start, end = interval
                    if (start is not None and value < start) or (end is not None and value >= end):
                        return False
            return True

        ordered = sorted(rt.registry.all(), key=lambda w: (w.created_ns, w.id), reverse=True)
        matching = [w for w in ordered if keep(w) and (after is None or (w.created_ns, w.id) < tuple(after))]
        chosen = matching[: page.size]
        out: dict[str, Any] = {}
        if len(matching) > page.size:
            out["nextPageToken"] = encode_token([chosen[-1].created_ns, chosen[-1].id], scope)
        if chosen:
            out["webhooks"] = [webhook_json(w) for w in chosen]
        return out

    # -- deliveries -----------------------------------------------------------------------------
    async def list_deliveries(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        page = read_pagination(body)
        webhook_id = read_str(body, "webhookId")
        if not webhook_id:
            raise invalid_argument("webhookId: required")
        filt = read_object(body, "filter") or {}
        types = _event_type_filter(filt.get("eventTypes"), "filter.eventTypes")
        success = read_bool(filt, "success", "filter.success")
        interval = read_interval(filt, "deliveryTime") or (None, None)
        webhook = rt.registry.get(webhook_id)
        scope = request_hash({"w": webhook_id, "t": types, "s": success, "i": interval})
        after = decode_token(page.token, scope, (int, int)) if page.token else None
        query = DeliveryQuery(
            webhook_idx=webhook.idx,
            not_before=rt.retention_floor(),
            start=interval[0],
            end=interval[1],
            success=success,
            event_types=types,
        )
        rows = rt.store.page(query, (after[0], after[1]) if after else None, page.size + 1)
        out: dict[str, Any] = {}
        if len(rows) > page.size:
            rows = rows[: page.size]
            out["nextPageToken"] = encode_token([rows[-1].delivered_at, rows[-1].key], scope)
        if rows:
            out["deliveries"] = [delivery_json(materialize(r, webhook, rt.identity)) for r in rows]
        return out

    async def get_delivery(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return delivery_out(find_row(request.path_params["id"]))

    async def redeliver(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        webhook_id = request.query_params.get("webhookId") or read_str(body, "webhookId")
        if not webhook_id:
            raise invalid_argument("webhookId: required")
        row = find_row(request.path_params["id"])
        webhook = rt.registry.get(webhook_id)
        if webhook.idx != row.webhook_idx:
            raise invalid_argument(
                f"delivery {request.path_params['id']!r} does not belong to webhook {webhook_id!r}"
            )
        original = materialize(row, webhook, rt.identity)
        event = Event(
            original.event_id, event_type_name(row.event_type), row.event_at, rt.identity.company_id, {}
        )
        try:
            new_row = await rt.dispatcher.send_once(webhook, event, stored_body(row, rt.identity, webhook.body_shape))
        except PushLimited as exc:
            raise ApiError(Code.RESOURCE_EXHAUSTED, str(exc), retry_after=exc.retry_after) from exc
        return delivery_out(new_row)

    async def trigger_test(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        webhook = rt.registry.get(request.path_params["id"])
        event_type = read_str(body, "eventType") or "HEALTH_CHECK"
        if event_type not in EVENT_CODES:
            raise invalid_argument(f"eventType: unknown event type {event_type!r}")
        raw = read_bytes(body, "payload")
        payload: dict[str, Any] = {"validation": "hello world"}
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = None
            payload = decoded if isinstance(decoded, dict) else {"validation": raw.decode("utf-8", "replace")}
        event = rt.dispatcher.new_event(event_type, payload)
        try:
            row = await rt.dispatcher.send_once(webhook, event)
        except PushLimited as exc:
            raise ApiError(Code.RESOURCE_EXHAUSTED, str(exc), retry_after=exc.retry_after) from exc
        return delivery_out(row)

    async def webhook_item(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        handler = {"GET": get_webhook, "PUT": update_webhook, "DELETE": delete_webhook}[request.method]
        return await handler(request, body)

    def webhook_item_endpoint() -> Callable[[Request], Awaitable[Response]]:
        read, write = rpc(webhook_item), rpc(webhook_item, write=True)

        async def endpoint(request: Request) -> Response:
            return await (read if request.method == "GET" else write)(request)

        return endpoint

    routes = [
        Route("/v1/webhooks", rpc(create_webhook, write=True), methods=["POST"]),
        Route("/v1/webhooks:list", rpc(list_webhooks, listing=True), methods=["POST"]),
        Route("/v1/webhooks/{id}", webhook_item_endpoint(), methods=["GET", "PUT", "DELETE"]),
        Route("/v1/webhooks/{id}/test", rpc(trigger_test, write=True), methods=["POST"]),
        Route("/v1/webhooks/deliveries/{id}/redeliver", rpc(redeliver, write=True), methods=["POST"]),
        Route("/v1/webhook/deliveries:list", rpc(list_deliveries, listing=True), methods=["POST"]),
        Route("/v1/webhook/deliveries/{id}", rpc(get_delivery), methods=["GET"]),
        *admin_routes(rt),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status == 405:
            return error_response(ApiError(Code.UNIMPLEMENTED, "Method Not Allowed"))
        if status == 404:
            return error_response(ApiError(Code.NOT_FOUND, "Not Found"))
        return error_response(ApiError(Code.INTERNAL, getattr(exc, "detail", "internal error")))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(ApiError(Code.INTERNAL, f"internal error: {type(exc).__name__}"))

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    return _dated(app, rt)


def _dated(app: Any, rt: Runtime) -> Any:
    """``app`` with a ``Date`` header on every answer, read from the sandbox clock (as MoeGo's is from its own).

    So ``POST /_sandbox/clock {"advanceSeconds": S}`` also puts the sandbox S seconds ahead of the
    caller's clock, which is how tests give MoeGo and the collector a clock skew.
    """

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_dated(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                date = format_datetime(datetime.fromtimestamp(rt.clock.now_ns() / 1e9, timezone.utc), usegmt=True)
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date.encode("ascii"))]}
            await send(message)

        await app(scope, receive, send_dated)

    return wrapper
