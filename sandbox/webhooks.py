"""The webhook registry: create, read, update, delete and list webhooks, with MoeGo's validation.

Rules (each violation is INVALID_ARGUMENT unless noted):

- ``endpointUrl`` is required and must be ``https://``, except on loopback hosts (127.0.0.0/8,
  ``localhost``, ``[::1]``), which may be plain ``http://``; a second webhook with the same
  ``endpointUrl`` is ALREADY_EXISTS;
- ``eventTypes`` is required, non-empty, and holds known event type names;
- ``retryPolicy`` (optional): ``maxRetries`` 0..3, ``initialIntervalMs`` 100..3,600,000,
  ``backoffFactor`` 1..10, ``retryableHttpCodes`` within 100..599;
- ``contentType`` can only be ``CONTENT_TYPE_JSON``;
- at most 10 webhooks: the 11th is RESOURCE_EXHAUSTED.

``isActive`` defaults to true when a create request leaves it out; ``verifySsl`` to false.
Updates are patches: only the fields present in the request change.
Ids are ``whk_`` followed by 12 lowercase letters and digits, drawn from a seeded generator, so a
given seed yields the same ids in the same order.
"""

from __future__ import annotations

import ipaddress
import random
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sandbox.errors import ApiError, Code, invalid_argument, not_found
from sandbox.events import EVENT_CODES
from sandbox.model import DEFAULT_RETRY_POLICY, RetryPolicyRecord, WebhookRecord
from sandbox.protojson import (
    read_bool,
    read_headers,
    read_int,
    read_object,
    read_str,
    read_str_list,
)
from sandbox.shapes import resolve_shape

__all__ = ["MAX_WEBHOOKS", "WebhookRegistry", "is_loopback_host", "validate_endpoint"]

MAX_WEBHOOKS = 10
_ID_ALPHABET = string.ascii_lowercase + string.digits


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_endpoint(url: str) -> str:
    """``url`` if MoeGo would accept it as an endpoint; INVALID_ARGUMENT otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise invalid_argument(f"endpointUrl: malformed URL {url!r}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise invalid_argument(f"endpointUrl: must be an absolute https URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise invalid_argument("endpointUrl: must use https (plain http is accepted only for loopback hosts)")
    return url


def _event_types(values: list[str] | None, *, required: bool) -> list[str] | None:
    if values is None:
        if required:
            raise invalid_argument("eventTypes: at least one event type is required")
        return None
    if not values:
        raise invalid_argument("eventTypes: at least one event type is required")
    unknown = [v for v in values if v not in EVENT_CODES]
    if unknown:
        raise invalid_argument(f"eventTypes: unknown event type {unknown[0]!r}")
    return list(dict.fromkeys(values))


def _retry_policy(body: Mapping[str, Any]) -> RetryPolicyRecord | None:
    raw = read_object(body, "retryPolicy")
    if raw is None:
        return None
    max_retries = read_int(raw, "maxRetries", "retryPolicy.maxRetries")
    interval = read_int(raw, "initialIntervalMs", "retryPolicy.initialIntervalMs")
    factor = read_int(raw, "backoffFactor", "retryPolicy.backoffFactor")
    codes = raw.get("retryableHttpCodes")
    if max_retries is not None and not 0 <= max_retries <= 3:
        raise invalid_argument("retryPolicy.maxRetries: must be between 0 and 3")
    if interval is not None and not 100 <= interval <= 3_600_000:
        raise invalid_argument("retryPolicy.initialIntervalMs: must be between 100 and 3600000")
    if factor is not None and not 1 <= factor <= 10:
        raise invalid_argument("retryPolicy.backoffFactor: must be between 1 and 10")
    parsed_codes: tuple[int, ...] | None = None
    if codes is not None:
        if not isinstance(codes, list):
            raise invalid_argument("retryPolicy.retryableHttpCodes: expected a list of integers")
        parsed_codes = tuple(read_int({"c": c}, "c", "retryPolicy.retryableHttpCodes") or 0 for c in codes)
        if any(not 100 <= c <= 599 for c in parsed_codes):
            raise invalid_argument("retryPolicy.retryableHttpCodes: HTTP status codes are 100..599")
    base = DEFAULT_RETRY_POLICY
    return RetryPolicyRecord(
        max_retries=base.max_retries if max_retries is None else max_retries,
        initial_interval_ms=interval or base.initial_interval_ms,
        backoff_factor=factor or base.backoff_factor,
        retryable_http_codes=base.retryable_http_codes if parsed_codes is None else parsed_codes,
    )


def _organizations(body: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    raw = body.get("organizations")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise invalid_argument("organizations: expected a list of {id, type}")
    return [
        (read_str(o, "id", "organizations.id") or "", read_str(o, "type", "organizations.type") or "")
        for o in raw
    ]


class WebhookRegistry:
    """All webhooks of the sandbox's one API client, in creation order."""

    def __init__(self, *, seed: int, company_id: str, body_shape: str = "guide") -> None:
        self._rng = random.Random(f"{seed}:webhook-ids")
        self._seed = seed
        self._body_shape = body_shape
        self._company_id = company_id
        self._by_id: dict[str, WebhookRecord] = {}
        self._next_idx = 1

    # -- identity -------------------------------------------------------------------------------
    def new_id(self) -> str:
        """The next webhook id of the seeded sequence (``whk_`` + 12 characters)."""
        while True:
            candidate = "whk_" + "".join(self._rng.choice(_ID_ALPHABET) for _ in range(12))
            if candidate not in self._by_id:
                return candidate

    def default_organizations(self) -> list[tuple[str, str]]:
        """The organizations a webhook belongs to unless the request names others."""
        return [(self._company_id, "COMPANY")]

    # -- reads ----------------------------------------------------------------------------------
    def find(self, webhook_id: str) -> WebhookRecord | None:
        """The webhook with this id, or None."""
        return self._by_id.get(webhook_id)

    def get(self, webhook_id: str) -> WebhookRecord:
        """The webhook with this id; NOT_FOUND otherwise."""
        webhook = self._by_id.get(webhook_id)
        if webhook is None:
            raise not_found(f"webhook {webhook_id!r} not found")
        return webhook

    def by_idx(self, idx: int) -> WebhookRecord | None:
        """The webhook stored under the compact index ``idx`` (used by the delivery store)."""
        for webhook in self._by_id.values():
            if webhook.idx == idx:
                return webhook
        return None

    def all(self) -> list[WebhookRecord]:
        """Every webhook, in creation order."""
        return list(self._by_id.values())

    # -- writes ---------------------------------------------------------------------------------
    def add(self, record: WebhookRecord) -> WebhookRecord:
        """Register an already-built webhook (seeding); assigns its compact index and its body shape."""
        record.idx = self._next_idx
        record.body_shape = resolve_shape(self._body_shape, self._seed, record.idx)
        self._next_idx += 1
        self._by_id[record.id] = record
        return record

    def _check_unique_url(self, url: str, *, except_id: str | None = None) -> None:
        for other in self._by_id.values():
            if other.endpoint_url == url and other.id != except_id:
                raise ApiError(Code.ALREADY_EXISTS, f"a webhook with endpointUrl {url!r} already exists")

    def create(self, body: Mapping[str, Any], now_ns: int) -> WebhookRecord:
        """A new webhook from a CreateWebhookRequest; validation errors as the module docstring says."""
        url = read_str(body, "endpointUrl")
        if not url:
            raise invalid_argument("endpointUrl: required")
        validate_endpoint(url)
        event_types = _event_types(read_str_list(body, "eventTypes"), required=True)
        assert event_types is not None
        content_type = read_str(body, "contentType")
        if content_type not in (None, "", "CONTENT_TYPE_JSON"):
            raise invalid_argument(f"contentType: unsupported {content_type!r}")
        secret = read_str(body, "secretToken") or ""
        is_active = read_bool(body, "isActive")
        verify_ssl = read_bool(body, "verifySsl")
        headers = read_headers(body, "headers") or {}
        policy = _retry_policy(body) or DEFAULT_RETRY_POLICY
        organizations = _organizations(body) or self.default_organizations()
        self._check_unique_url(url)
        if len(self._by_id) >= MAX_WEBHOOKS:
            raise ApiError(Code.RESOURCE_EXHAUSTED, f"a client can have at most {MAX_WEBHOOKS} webhooks")
        record = WebhookRecord(
            id=self.new_id(),
            idx=0,
            endpoint_url=url,
            event_types=event_types,
            created_ns=now_ns,
            updated_ns=now_ns,
            secret_token=secret,
            retry_policy=policy,
            is_active=True if is_active is None else is_active,
            verify_ssl=bool(verify_ssl),
            headers=headers,
            organizations=organizations,
        )
        return self.add(record)

    def update(self, webhook_id: str, body: Mapping[str, Any], now_ns: int) -> WebhookRecord:
        """Apply an UpdateWebhookRequest: the fields present change, the others stay."""
        webhook = self.get(webhook_id)
        body_id = read_str(body, "id")
        if body_id and body_id != webhook_id:
            raise invalid_argument(f"id: {body_id!r} does not match the webhook in the path")
        url = read_str(body, "endpointUrl")
        if url is not None:
            validate_endpoint(url)
            self._check_unique_url(url, except_id=webhook_id)
        event_types = _event_types(read_str_list(body, "eventTypes"), required=False)
        content_type = read_str(body, "contentType")
        if content_type not in (None, "", "CONTENT_TYPE_JSON"):
            raise invalid_argument(f"contentType: unsupported {content_type!r}")
        secret = read_str(body, "secretToken")
        is_active = read_bool(body, "isActive")
        verify_ssl = read_bool(body, "verifySsl")
        headers = read_headers(body, "headers")
        policy = _retry_policy(body)
        organizations = _organizations(body)
        if url is not None:
            webhook.endpoint_url = url
        if event_types is not None:
            webhook.event_types = event_types
        if secret is not None:
            webhook.secret_token = secret
        if is_active is not None:
            webhook.is_active = is_active
        if verify_ssl is not None:
            webhook.verify_ssl = verify_ssl
        if headers is not None:
            webhook.headers = headers
        if policy is not None:
            webhook.retry_policy = policy
        if organizations is not None:
            webhook.organizations = organizations
        webhook.updated_ns = max(now_ns, webhook.updated_ns + 1)
        return webhook

    def delete(self, webhook_id: str) -> WebhookRecord:
        """Remove a webhook; NOT_FOUND if there is none with this id."""
        webhook = self.get(webhook_id)
        del self._by_id[webhook_id]
        return webhook
