"""A client for MoeGo's Webhook API that speaks its contract exactly (MoeGo's own
definitions: ``moego/business/webhook/v1/webhook_service.proto`` and its OpenAPI file).

One :class:`httpx.Client` is built by :func:`make_http_client` (base URL, ``Authorization: Basic``,
timeouts always set, transport injectable for tests); :class:`MoeGoClient` wraps it with one method
per RPC. Nothing above this module sees an httpx exception: they are converted here.

Exceptions::

    MoeGoError                      every failure below; str() is one line: what happened, what to do
    ├── ApiError                    MoeGo answered with a gRPC status (code_name, code, http_status, message)
    │   ├── InvalidArgument         400  INVALID_ARGUMENT
    │   ├── Unauthenticated         401  UNAUTHENTICATED   (missing or wrong API key)
    │   ├── PermissionDenied        403  PERMISSION_DENIED
    │   ├── NotFound                404  NOT_FOUND
    │   ├── AlreadyExists           409  ALREADY_EXISTS
    │   ├── ResourceExhausted       429  RESOURCE_EXHAUSTED (rate or quota limit; retry_after when sent)
    │   ├── Internal                500  INTERNAL
    │   └── Unavailable             503  UNAVAILABLE
    ├── TransportError              no answer: cannot connect, timed out, connection broken
    ├── MalformedResponse           an answer that is not the JSON the contract promises
    └── NoWebhooksListed            ListWebhooks is empty while the archive tracks webhooks (a wrong key?)

Retries: 429, 502, 503, 504 and timeouts are retried with bounded exponential backoff and full
jitter, honouring ``Retry-After``; other statuses are not. Calls that send a webhook (redeliver,
test) or create one are retried only on 429 and 503, never after a timeout, 502 or 504, since the
first attempt may have gone through.
"""

from __future__ import annotations

import base64
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator, Mapping, Sequence

import httpx

from . import __version__
from .config import Settings
from .models import MalformedMessage, RetryPolicy, Webhook, WebhookDelivery, format_timestamp

__all__ = [
    "MoeGoError", "ApiError", "InvalidArgument", "Unauthenticated", "PermissionDenied", "NotFound",
    "AlreadyExists", "ResourceExhausted", "Internal", "Unavailable", "TransportError", "MalformedResponse",
    "RetryConfig", "DeliveryPage", "MoeGoClient", "make_http_client", "make_client",
]


class MoeGoError(Exception):
    """Any failure talking to MoeGo; its message is one line saying what happened and what to do."""


class ApiError(MoeGoError):
    """MoeGo answered with an error status."""

    code_name = "UNKNOWN"

    def __init__(self, message: str, *, code: int, code_name: str, http_status: int, rpc: str,
                 retry_after: float | None = None) -> None:
        self.message = message
        self.code = code
        self.code_name = code_name
        self.http_status = http_status
        self.rpc = rpc
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"MoeGo refused {self.rpc} ({self.code_name}, HTTP {self.http_status}): {self.message or 'no message'}"


class InvalidArgument(ApiError):
    """The request had a value MoeGo does not accept."""


class Unauthenticated(ApiError):
    """The API key is missing or wrong."""

    def _describe(self) -> str:
        return (f"MoeGo rejected the API key (UNAUTHENTICATED, HTTP {self.http_status}): "
                "check MOEGO_API_KEY or --api-key")


class PermissionDenied(ApiError):
    """The API key is valid but lacks the rights for this call."""

    def _describe(self) -> str:
        return (f"the API key may not call {self.rpc} (PERMISSION_DENIED): "
                "use a key with webhook rights in MoeGo's developer settings")


class NotFound(ApiError):
    """The webhook or delivery does not exist (any more)."""


class AlreadyExists(ApiError):
    """A webhook with this endpoint URL already exists."""


class ResourceExhausted(ApiError):
    """A rate or quota limit was reached."""

    def _describe(self) -> str:
        wait = f"; MoeGo asks to wait {self.retry_after:g}s" if self.retry_after else ""
        return (f"MoeGo is limiting {self.rpc} (RESOURCE_EXHAUSTED: {self.message or 'limit reached'}){wait}: "
                "try again later")


class Internal(ApiError):
    """MoeGo failed internally."""


class Unavailable(ApiError):
    """MoeGo is temporarily unavailable."""

    def _describe(self) -> str:
        return f"MoeGo is unavailable for {self.rpc} (HTTP {self.http_status}): {self.message or 'try again later'}"


class TransportError(MoeGoError):
    """No usable answer came back: the host could not be reached, or it did not answer in time."""


class MalformedResponse(MoeGoError):
    """MoeGo answered, but not with the JSON the contract describes."""


class NoWebhooksListed(MoeGoError):
    """MoeGo lists no webhook for this key although the archive tracks some: most likely the wrong key."""


_CODES: dict[int, tuple[str, type[ApiError]]] = {
    1: ("CANCELLED", ApiError),
    2: ("UNKNOWN", ApiError),
    3: ("INVALID_ARGUMENT", InvalidArgument),
    4: ("DEADLINE_EXCEEDED", ApiError),
    5: ("NOT_FOUND", NotFound),
    6: ("ALREADY_EXISTS", AlreadyExists),
    7: ("PERMISSION_DENIED", PermissionDenied),
    8: ("RESOURCE_EXHAUSTED", ResourceExhausted),
    13: ("INTERNAL", Internal),
    14: ("UNAVAILABLE", Unavailable),
    9: ("FAILED_PRECONDITION", ApiError),
    10: ("ABORTED", ApiError),
    11: ("OUT_OF_RANGE", ApiError),
    12: ("UNIMPLEMENTED", ApiError),
    15: ("DATA_LOSS", ApiError),
    16: ("UNAUTHENTICATED", Unauthenticated),
}
_HTTP_TO_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 501: 12, 502: 14, 503: 14, 504: 4}
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# For calls that send a webhook, only answers that say the request was not acted on are retried:
# a 502/504 from a gateway may come after MoeGo already sent the event.
_RETRYABLE_STATUS_NOT_IDEMPOTENT = frozenset({429, 503})


@dataclass(frozen=True)
class RetryConfig:
    """How hard to try: attempts in all, and the exponential backoff between them (seconds)."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0


@dataclass(frozen=True)
class DeliveryPage:
    """One page of ListWebhookDeliveries: its entries, the token that fetched it and the next one."""

    deliveries: list[WebhookDelivery]
    page_token: str
    next_page_token: str


def make_http_client(
    base_url: str,
    api_key: str,
    *,
    timeout_s: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The one ``httpx.Client`` for MoeGo: base URL, Basic auth with the key, JSON, timeouts set."""
    token = base64.b64encode(api_key.encode()).decode("ascii")
    return httpx.Client(
        base_url=base_url,
        headers={
            "Authorization": f"Basic {token}",
            "Accept": "application/json",
            "User-Agent": f"moego-monitor/{__version__}",
        },
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        transport=transport,
        follow_redirects=False,
    )


def make_client(settings: Settings, *, transport: httpx.BaseTransport | None = None,
                retry: RetryConfig | None = None) -> "MoeGoClient":
    """A :class:`MoeGoClient` for the configured MoeGo (raises ``ConfigError`` without an API key)."""
    http = make_http_client(settings.base_url, settings.require_api_key(), timeout_s=settings.timeout_s,
                            transport=transport)
    return MoeGoClient(http, retry=retry or RetryConfig())


def _interval(start: datetime | None, end: datetime | None) -> dict[str, str] | None:
    out = {}
    if start is not None:
        out["startTime"] = format_timestamp(start)
    if end is not None:
        out["endTime"] = format_timestamp(end)
    return out or None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class MoeGoClient:
    """One method per WebhookService RPC. Use as a context manager, or call :meth:`close`."""

    http: httpx.Client
    retry: RetryConfig = field(default_factory=RetryConfig)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __enter__(self) -> "MoeGoClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.http.close()

    # -- transport -------------------------------------------------------------------------------

    def _call(self, rpc: str, method: str, path: str, *, body: Any = None,
              params: Mapping[str, str] | None = None, idempotent: bool = True) -> dict[str, Any]:
        """Send one RPC, retrying what is safe to retry; the decoded JSON object, or a MoeGoError."""
        where = _public_url(self.http.base_url)
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = self.http.request(method, path, json=body, params=params)
            except httpx.TimeoutException as exc:
                if idempotent and not last:
                    self.sleep(self._backoff(attempt))
                    continue
                raise TransportError(
                    f"MoeGo at {where} did not answer {rpc} within {self.http.timeout.read}s: "
                    "try again, or raise --timeout"
                ) from exc
            except httpx.TransportError as exc:
                raise TransportError(
                    f"cannot reach MoeGo at {where} for {rpc} ({type(exc).__name__}: {exc}): "
                    "check MOEGO_BASE_URL and the network"
                ) from exc
            retryable = _RETRYABLE_STATUS if idempotent else _RETRYABLE_STATUS_NOT_IDEMPOTENT
            if response.status_code in retryable and not last:
                hinted = _retry_after(response)
                if hinted is not None and hinted > self.retry.max_retry_after:
                    raise self._error(rpc, response)
                self.sleep(hinted if hinted is not None else self._backoff(attempt))
                continue
            if response.status_code >= 400:
                raise self._error(rpc, response)
            return self._decode(rpc, response)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a random delay up to base * 2^(attempt-1), capped."""
        return self.rng.uniform(0, min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1)))

    @staticmethod
    def _decode(rpc: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedResponse(
                f"MoeGo answered {rpc} with something that is not JSON (HTTP {response.status_code}): "
                "try again; if it persists, check MOEGO_BASE_URL points at MoeGo's API"
            ) from exc
        if not isinstance(data, dict):
            raise MalformedResponse(f"MoeGo answered {rpc} with JSON that is not an object: try again")
        return data

    @staticmethod
    def _error(rpc: str, response: httpx.Response) -> ApiError:
        code, message = _HTTP_TO_CODE.get(response.status_code, 2), ""
        try:
            data = response.json()
            if isinstance(data, dict):
                if isinstance(data.get("code"), int) and not isinstance(data.get("code"), bool):
                    code = data["code"]
                message = str(data.get("message") or "")
        except (json.JSONDecodeError, UnicodeDecodeError):
            message = response.text[:200].strip().replace("\n", " ")
        name, cls = _CODES.get(code, ("UNKNOWN", ApiError))
        return cls(message, code=code, code_name=name, http_status=response.status_code, rpc=rpc,
                   retry_after=_retry_after(response))

    @staticmethod
    def _parse(rpc: str, parse: Callable[[Any], Any], value: Any) -> Any:
        try:
            return parse(value)
        except MalformedMessage as exc:
            raise MalformedResponse(f"MoeGo's answer to {rpc} is malformed ({exc}): try again; report it if it persists") from exc

    @staticmethod
    def _list(rpc: str, data: Mapping[str, Any], key: str) -> list[Any]:
        items = data.get(key) or []
        if not isinstance(items, list):
            raise MalformedResponse(f"MoeGo's answer to {rpc} is malformed ({key} is not a list): try again")
        token = data.get("nextPageToken") or ""
        if not isinstance(token, str):
            raise MalformedResponse(f"MoeGo's answer to {rpc} is malformed (nextPageToken is not a string): try again")
        return items

    # -- webhooks --------------------------------------------------------------------------------

    def list_webhooks(self, *, page_size: int = 500, is_active: bool | None = None,
                      event_types: Sequence[str] | None = None) -> Iterator[Webhook]:
        """Every webhook of the account, following ``nextPageToken`` to the last page."""
        filt: dict[str, Any] = {}
        if is_active is not None:
            filt["isActive"] = is_active
        if event_types:
            filt["eventTypes"] = list(event_types)
        token = ""
        while True:
            body: dict[str, Any] = {"pagination": {"pageSize": page_size}}
            if token:
                body["pagination"]["pageToken"] = token
            if filt:
                body["filter"] = filt
            data = self._call("ListWebhooks", "POST", "/v1/webhooks:list", body=body)
            for item in self._list("ListWebhooks", data, "webhooks"):
                yield self._parse("ListWebhooks", Webhook.from_json, item)
            token = data.get("nextPageToken") or ""
            if not token:
                return

    def get_webhook(self, webhook_id: str) -> Webhook:
        """GetWebhook."""
        return self._parse("GetWebhook", Webhook.from_json,
                           self._call("GetWebhook", "GET", f"/v1/webhooks/{_seg(webhook_id)}"))

    def create_webhook(self, endpoint_url: str, event_types: Sequence[str], *, secret_token: str | None = None,
                       is_active: bool | None = None, verify_ssl: bool | None = None,
                       headers: Mapping[str, Sequence[str]] | None = None,
                       retry_policy: RetryPolicy | None = None, content_type: str | None = None) -> Webhook:
        """CreateWebhook (not retried after a timeout)."""
        body = _webhook_body(endpoint_url, event_types, secret_token, is_active, verify_ssl, headers,
                             retry_policy, content_type)
        return self._parse("CreateWebhook", Webhook.from_json,
                           self._call("CreateWebhook", "POST", "/v1/webhooks", body=body, idempotent=False))

    def update_webhook(self, webhook_id: str, endpoint_url: str, event_types: Sequence[str], *,
                       secret_token: str | None = None, is_active: bool | None = None,
                       verify_ssl: bool | None = None, headers: Mapping[str, Sequence[str]] | None = None,
                       retry_policy: RetryPolicy | None = None, content_type: str | None = None) -> Webhook:
        """UpdateWebhook (a full replacement of the fields given; endpoint URL and event types required)."""
        body = _webhook_body(endpoint_url, event_types, secret_token, is_active, verify_ssl, headers,
                             retry_policy, content_type)
        body["id"] = webhook_id
        return self._parse("UpdateWebhook", Webhook.from_json,
                           self._call("UpdateWebhook", "PUT", f"/v1/webhooks/{_seg(webhook_id)}", body=body))

    def delete_webhook(self, webhook_id: str) -> None:
        """DeleteWebhook."""
        self._call("DeleteWebhook", "DELETE", f"/v1/webhooks/{_seg(webhook_id)}")

    # -- deliveries ------------------------------------------------------------------------------

    def iter_delivery_pages(self, webhook_id: str, *, page_size: int = 500,
                            event_types: Sequence[str] | None = None, success: bool | None = None,
                            start: datetime | None = None, end: datetime | None = None,
                            page_token: str = "") -> Iterator[DeliveryPage]:
        """ListWebhookDeliveries page by page, from ``page_token`` (or the first page) to the last.

        ``start`` is inclusive and ``end`` exclusive (MoeGo's ``deliveryTime`` interval).
        """
        filt: dict[str, Any] = {}
        if event_types:
            filt["eventTypes"] = list(event_types)
        if success is not None:
            filt["success"] = success
        interval = _interval(start, end)
        if interval:
            filt["deliveryTime"] = interval
        token = page_token
        while True:
            body: dict[str, Any] = {"pagination": {"pageSize": page_size}, "webhookId": webhook_id}
            if token:
                body["pagination"]["pageToken"] = token
            if filt:
                body["filter"] = filt
            data = self._call("ListWebhookDeliveries", "POST", "/v1/webhook/deliveries:list", body=body)
            items = self._list("ListWebhookDeliveries", data, "deliveries")
            deliveries = [self._parse("ListWebhookDeliveries", WebhookDelivery.from_json, i) for i in items]
            next_token = data.get("nextPageToken") or ""
            if next_token and next_token == token:
                raise MalformedResponse("MoeGo answered ListWebhookDeliveries with the same page token again "
                                        "(the listing would never end): try again; report it if it persists")
            yield DeliveryPage(deliveries=deliveries, page_token=token, next_page_token=next_token)
            if not next_token:
                return
            token = next_token

    def list_deliveries(self, webhook_id: str, **filters: Any) -> Iterator[WebhookDelivery]:
        """Every delivery of a webhook matching the filters of :meth:`iter_delivery_pages`."""
        for page in self.iter_delivery_pages(webhook_id, **filters):
            yield from page.deliveries

    def get_delivery(self, delivery_id: str) -> WebhookDelivery:
        """GetWebhookDelivery."""
        return self._parse("GetWebhookDelivery", WebhookDelivery.from_json,
                           self._call("GetWebhookDelivery", "GET", f"/v1/webhook/deliveries/{_seg(delivery_id)}"))

    def redeliver(self, delivery_id: str, webhook_id: str) -> WebhookDelivery:
        """RedeliverWebhookDelivery: MoeGo sends the event again; returns the new attempt's log entry."""
        data = self._call("RedeliverWebhookDelivery", "POST",
                          f"/v1/webhooks/deliveries/{_seg(delivery_id)}/redeliver",
                          params={"webhookId": webhook_id}, idempotent=False)
        return self._parse("RedeliverWebhookDelivery", WebhookDelivery.from_json, data)

    def trigger_test(self, webhook_id: str, event_type: str | None = None,
                     payload: bytes | None = None) -> WebhookDelivery:
        """TriggerTestWebhookDelivery: send a test event (``payload`` raw bytes, sent base64)."""
        body: dict[str, Any] = {}
        if event_type:
            body["eventType"] = event_type
        if payload:
            body["payload"] = base64.b64encode(payload).decode("ascii")
        data = self._call("TriggerTestWebhookDelivery", "POST", f"/v1/webhooks/{_seg(webhook_id)}/test",
                          body=body, idempotent=False)
        return self._parse("TriggerTestWebhookDelivery", WebhookDelivery.from_json, data)


def _public_url(url: httpx.URL) -> str:
    """The base URL as it may be printed: any ``user:password@`` removed."""
    return str(url.copy_with(userinfo=b"")).rstrip("/")


def _seg(value: str) -> str:
    """A path segment, percent-encoded so an id can never change the path."""
    from urllib.parse import quote

    return quote(value, safe="")


def _webhook_body(endpoint_url: str, event_types: Sequence[str], secret_token: str | None, is_active: bool | None,
                  verify_ssl: bool | None, headers: Mapping[str, Sequence[str]] | None,
                  retry_policy: RetryPolicy | None, content_type: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"endpointUrl": endpoint_url, "eventTypes": list(event_types)}
    if secret_token is not None:
        body["secretToken"] = secret_token
    if is_active is not None:
        body["isActive"] = is_active
    if verify_ssl is not None:
        body["verifySsl"] = verify_ssl
    if headers:
        body["headers"] = {name: {"values": list(values)} for name, values in headers.items()}
    if retry_policy is not None:
        body["retryPolicy"] = retry_policy.to_json()
    if content_type:
        body["contentType"] = content_type
    return body
