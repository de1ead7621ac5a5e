"""A small in-memory MoeGo behind ``httpx.MockTransport``, for the collector's unit tests.

It answers ListWebhooks and ListWebhookDeliveries as the contract says (proto3 JSON, deliveryTime
filter [start, end), 15-day retention at its own ``now``, opaque page tokens), lists entries in a
shuffled order (the collector must not rely on any order), and can be told to fail: a queue of
scripted answer for the n-th deliveries call (``answer_call``), refused page tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from collectors.client import MoeGoClient, RetryConfig, make_http_client
from collectors.models import format_timestamp, parse_timestamp

RETENTION = timedelta(days=15)
KEY = "fake-key"
BASE_URL = "https://moego.test"


def delivery(webhook_id: str, n: int, at: datetime, *, success: bool = True, retry_count: int = 0) -> dict[str, Any]:
    """A proto3-JSON delivery entry as MoeGo writes it (defaults omitted)."""
    entry: dict[str, Any] = {
        "id": f"{webhook_id}-d{n:06d}",
        "webhookId": webhook_id,
        "eventType": "APPOINTMENT_CREATED",
        "eventId": f"evt-{webhook_id}-{n}",
        "requestUrl": "https://receiver.example/hook",
        "deliveredTo": "203.0.113.7:443",
        "requestHeaders": {"Content-Type": {"values": ["application/json"]},
                           "X-Moe-Signature-256": {"values": ["c2lnbmF0dXJl"]}},
        "requestBody": base64.b64encode(json.dumps({"id": n}).encode()).decode(),
        "responseStatus": 200 if success else 503,
        "deliveredAt": format_timestamp(at),
        "durationMs": str(40 + n % 300),
        "requestFormat": "CONTENT_TYPE_JSON",
    }
    if success:
        entry["success"] = True
    else:
        entry["error"] = "upstream answered 503"
    if retry_count:
        entry["retryCount"] = retry_count
    return entry


def webhook(webhook_id: str, *, active: bool = True) -> dict[str, Any]:
    """A proto3-JSON webhook configuration."""
    out: dict[str, Any] = {
        "id": webhook_id,
        "endpointUrl": f"https://receiver.example/{webhook_id}",
        "eventTypes": ["APPOINTMENT_CREATED"],
        "secretToken": "s3cret-token",
        "verifySsl": True,
        "createdTime": "2026-01-01T00:00:00Z",
    }
    if active:
        out["isActive"] = True
    return out


@dataclass
class FakeMoeGo:
    """MoeGo's delivery log in memory; ``now`` moves only when a test moves it."""

    now: datetime
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Answers for given ListWebhookDeliveries calls (1-based count), instead of the real one.
    script: dict[int, httpx.Response | Exception] = field(default_factory=dict)
    #: Page tokens answered with INVALID_ARGUMENT, as MoeGo does with an expired one.
    refused_tokens: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    deliveries_calls: int = 0
    #: Webhooks that exist (GetWebhook finds them) but ListWebhooks leaves out.
    unlisted: set[str] = field(default_factory=set)
    seed: int = 1

    # -- setup ------------------------------------------------------------------------------------

    def add_webhook(self, webhook_id: str, *, active: bool = True) -> None:
        self.webhooks.append(webhook(webhook_id, active=active))

    def add_deliveries(self, webhook_id: str, count: int, *, span: timedelta = RETENTION - timedelta(hours=1),
                       newest: datetime | None = None) -> list[str]:
        """``count`` entries spread evenly over ``span`` ending at ``newest`` (default ``now``)."""
        newest = newest or self.now - timedelta(seconds=1)
        start_n = len([e for e in self.entries.values() if e["webhookId"] == webhook_id])
        ids = []
        for i in range(count):
            at = newest - span * (i / max(1, count - 1)) if count > 1 else newest
            entry = delivery(webhook_id, start_n + i, at)
            self.entries[entry["id"]] = entry
            ids.append(entry["id"])
        return ids

    def advance(self, delta: timedelta) -> None:
        """Move MoeGo's clock; entries older than the retention window are deleted."""
        self.now += delta
        floor = self.now - RETENTION
        for key in [k for k, e in self.entries.items() if parse_timestamp(e["deliveredAt"]) < floor]:
            del self.entries[key]

    def answer_call(self, n: int, answer: httpx.Response | Exception) -> None:
        """Answer the ``n``-th ListWebhookDeliveries call from now on with ``answer``."""
        self.script[self.deliveries_calls + n] = answer

    def client(self, *, attempts: int = 2) -> MoeGoClient:
        http = make_http_client(BASE_URL, KEY, transport=httpx.MockTransport(self.handle))
        return MoeGoClient(http, retry=RetryConfig(attempts=attempts, base_delay=0, max_delay=0), sleep=lambda s: None)

    def live_ids(self, webhook_id: str | None = None) -> set[str]:
        return {k for k, e in self.entries.items() if webhook_id is None or e["webhookId"] == webhook_id}

    # -- the API ----------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        self.requests.append({"path": request.url.path, "body": body})
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(KEY.encode()).decode():
            return _error(401, 16, "invalid api key")
        if request.url.path == "/v1/webhooks:list":
            listed = [w for w in self.webhooks if w["id"] not in self.unlisted]
            return httpx.Response(200, json={"webhooks": listed})
        if request.method == "GET" and request.url.path.startswith("/v1/webhooks/"):
            wanted = request.url.path.rsplit("/", 1)[-1]
            found = [w for w in self.webhooks if w["id"] == wanted]
            return httpx.Response(200, json=found[0]) if found else _error(404, 5, "webhook not found")
        if request.url.path == "/v1/webhook/deliveries:list":
            self.deliveries_calls += 1
            answer = self.script.pop(self.deliveries_calls, None)
            if isinstance(answer, Exception):
                raise answer
            if answer is not None:
                return answer
            return self._list_deliveries(body)
        return _error(404, 5, "no such route")

    def _list_deliveries(self, body: dict[str, Any]) -> httpx.Response:
        size = body["pagination"]["pageSize"]
        token = body["pagination"].get("pageToken", "")
        interval = (body.get("filter") or {}).get("deliveryTime") or {}
        start = parse_timestamp(interval["startTime"]) if "startTime" in interval else None
        end = parse_timestamp(interval["endTime"]) if "endTime" in interval else None
        floor = self.now - RETENTION
        scope = json.dumps([body["webhookId"], interval], sort_keys=True)
        matching = [
            e for e in self.entries.values()
            if e["webhookId"] == body["webhookId"]
            and floor <= parse_timestamp(e["deliveredAt"])
            and (start is None or parse_timestamp(e["deliveredAt"]) >= start)
            and (end is None or parse_timestamp(e["deliveredAt"]) < end)
        ]
        # A stable but scrambled order: keyed on a hash of the id, not on time.
        matching.sort(key=lambda e: hashlib.sha256(f"{self.seed}:{e['id']}".encode()).digest())
        offset = 0
        if token:
            try:
                token_scope, raw = base64.urlsafe_b64decode(token.encode()).decode().rsplit("|", 1)
                offset = int(raw)
            except ValueError:
                return _error(400, 3, "invalid page token")
            if token in self.refused_tokens or token_scope != scope:
                self.refused_tokens.discard(token)  # refused once, like an expired token; a fresh one works
                return _error(400, 3, "pagination.pageToken: invalid page token")
        page = matching[offset: offset + size]
        answer: dict[str, Any] = {}
        if page:
            answer["deliveries"] = page
        if offset + size < len(matching):
            answer["nextPageToken"] = base64.urlsafe_b64encode(f"{scope}|{offset + size}".encode()).decode()
        return httpx.Response(200, json=answer)


def _error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "details": []}, headers=headers)


def error(status: int, code: int, message: str = "", **headers: str) -> httpx.Response:
    """A canned gRPC-gateway error answer."""
    return _error(status, code, message, **headers)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)
