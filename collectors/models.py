"""MoeGo Webhook API messages as typed dataclasses, parsed from proto3 JSON exactly.

proto3 JSON as grpc-gateway writes it (MoeGo's ``moego/business/webhook/v1/webhook.proto``):

- field names are lowerCamelCase; a field holding its default value is omitted, so every parser
  here supplies the proto default (``""``, ``0``, ``False``, empty list or map) for a missing key;
- ``int64`` values arrive as JSON strings (``"durationMs": "742"``), ``int32`` as numbers, and both
  forms are accepted for either;
- ``bytes`` are standard base64 (URL-safe base64 and missing padding are accepted too, as the
  protobuf JSON spec asks of parsers);
- timestamps are RFC 3339, any offset, up to nanoseconds; they become aware UTC ``datetime``
  (nanoseconds are truncated to microseconds, the precision of ``datetime``);
- enums are names; unknown names are kept as text, never rejected.

A message that is not a JSON object, or a field of the wrong JSON type, raises
:class:`MalformedMessage`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

__all__ = [
    "EVENT_TYPES",
    "MalformedMessage",
    "Organization",
    "RetryPolicy",
    "Webhook",
    "WebhookDelivery",
    "Headers",
    "parse_timestamp",
    "format_timestamp",
    "parse_bytes",
]

#: Event type names MoeGo documents today. Others may appear later and are kept as text.
EVENT_TYPES: tuple[str, ...] = (
    "HEALTH_CHECK",
    "APPOINTMENT_CREATED",
    "APPOINTMENT_UPDATED",
    "APPOINTMENT_FINISHED",
    "APPOINTMENT_CANCELED",
    "APPOINTMENT_DELETED",
    "CUSTOMER_CREATED",
    "CUSTOMER_UPDATED",
    "CUSTOMER_DELETED",
    "CUSTOMER_COMPLIANCE_CHANGED",
    "PET_CREATED",
    "PET_UPDATED",
    "PET_DELETED",
)

#: HTTP headers as MoeGo models them: ``map<string, HeaderValues{values: [..]}>``, flattened to lists.
Headers = dict[str, list[str]]


class MalformedMessage(ValueError):
    """A JSON message that does not have the shape of the MoeGo message it should be."""


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_timestamp(value: Any, *, name: str = "timestamp") -> datetime:
    """An RFC 3339 string (``2025-06-30T11:58:36.740351808Z``) as an aware UTC datetime."""
    if not isinstance(value, str):
        raise MalformedMessage(f"{name}: expected an RFC 3339 string, got {type(value).__name__}")
    m = _RFC3339.match(value)
    if not m:
        raise MalformedMessage(f"{name}: not an RFC 3339 timestamp: {value!r}")
    if value[10] == "T" and value[-1] == "Z":
        # What MoeGo sends. For this form (checked above) fromisoformat gives the same time, its fraction cut to
        # microseconds as below, in a tenth of the time (every entry has one).
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise MalformedMessage(f"{name}: impossible date or time in {value!r}") from exc
    year, month, day, hour, minute, second, frac, offset = m.groups()
    micros = int((frac or "0").ljust(6, "0")[:6])
    try:
        if offset in ("Z", "z"):
            tz = timezone.utc
        else:
            sign = 1 if offset[0] == "+" else -1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            from datetime import timedelta

            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
        )
    except ValueError as exc:
        raise MalformedMessage(f"{name}: impossible date or time in {value!r}") from exc
    return parsed.astimezone(timezone.utc)


def format_timestamp(value: datetime) -> str:
    """An aware datetime as RFC 3339 UTC with microseconds: ``2025-06-30T11:58:36.740351Z``.

    Fixed width, so the text sorts in time order; naive datetimes are refused.
    """
    if value.tzinfo is None:
        raise ValueError("naive datetime: times inside moego-monitor are aware UTC datetimes")
    v = value.astimezone(timezone.utc)
    # The same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), in a third of the time (the writer formats every row).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def parse_bytes(value: Any, *, name: str = "bytes") -> bytes:
    """A proto3 JSON ``bytes`` value (standard or URL-safe base64, padding optional) as bytes."""
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise MalformedMessage(f"{name}: expected a base64 string, got {type(value).__name__}")
    try:
        # What MoeGo sends: standard, padded base64. Strict decoding takes nothing else; anything else
        # (URL-safe, unpadded, surrounding blanks, or not base64) goes the long way below.
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage(f"{name}: not valid base64") from exc


def _obj(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):  # JSON objects decode to dict; a plain type check is much cheaper than an ABC
        raise MalformedMessage(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value


def _str(msg: Mapping[str, Any], key: str) -> str:
    value = msg.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedMessage(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _int(msg: Mapping[str, Any], key: str) -> int:
    value = msg.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool):
        raise MalformedMessage(f"{key}: expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise MalformedMessage(f"{key}: expected an integer, got {value!r}")


def _bool(msg: Mapping[str, Any], key: str) -> bool:
    value = msg.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise MalformedMessage(f"{key}: expected true or false, got {value!r}")
    return value


def _str_list(msg: Mapping[str, Any], key: str) -> list[str]:
    value = msg.get(key) or []
    if not isinstance(value, list):
        raise MalformedMessage(f"{key}: expected a list, got {type(value).__name__}")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))  # an enum sent by number: keep it as text
        else:
            raise MalformedMessage(f"{key}: expected strings, got {item!r}")
    return out


def _headers(msg: Mapping[str, Any], key: str) -> Headers:
    raw = _obj(msg.get(key), key)
    out: Headers = {}
    # Run for every header of every entry: plain type checks, no helper calls on the common path.
    for name, holder in raw.items():
        if holder.__class__ is dict:
            values = holder.get("values") or []
        else:
            values = _obj(holder, f"{key}.{name}").get("values") or []
        if values.__class__ is not list and not isinstance(values, list):
            raise MalformedMessage(f"{key}.{name}.values: expected a list of strings")
        for value in values:
            if value.__class__ is not str and not isinstance(value, str):
                raise MalformedMessage(f"{key}.{name}.values: expected a list of strings")
        out[name if name.__class__ is str else str(name)] = list(values)
    return out


def _optional_time(msg: Mapping[str, Any], key: str) -> datetime | None:
    value = msg.get(key)
    if value in (None, ""):
        return None
    return parse_timestamp(value, name=key)


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedMessage(f"{name}: expected a list")
    return value


def _display_only(parse: Any, value: Any, default: Any) -> Any:
    """Parse a configuration field the monitor only shows; an unexpected shape gives ``default``.

    The contract leaves some types open (a ``backoffFactor`` of 1.5, say): one odd field of one
    webhook must not stop every webhook from being archived.
    """
    if value is None:
        return default
    try:
        return parse(value)
    except MalformedMessage:
        return default


@dataclass(frozen=True)
class Organization:
    """An organization a webhook is scoped to."""

    id: str = ""
    type: str = ""

    @classmethod
    def from_json(cls, msg: Any) -> "Organization":
        msg = _obj(msg, "organization")
        return cls(id=_str(msg, "id"), type=_str(msg, "type"))


@dataclass(frozen=True)
class RetryPolicy:
    """How MoeGo retries a failed delivery of one webhook."""

    max_retries: int = 0
    initial_interval_ms: int = 0
    backoff_factor: int = 0
    retryable_http_codes: list[int] = field(default_factory=list)

    @classmethod
    def from_json(cls, msg: Any) -> "RetryPolicy":
        msg = _obj(msg, "retryPolicy")
        codes = msg.get("retryableHttpCodes") or []
        if not isinstance(codes, list):
            raise MalformedMessage("retryableHttpCodes: expected a list")
        return cls(
            max_retries=_int(msg, "maxRetries"),
            initial_interval_ms=_int(msg, "initialIntervalMs"),
            backoff_factor=_int(msg, "backoffFactor"),
            retryable_http_codes=[_int({"c": c}, "c") for c in codes],
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_retries:
            out["maxRetries"] = self.max_retries
        if self.initial_interval_ms:
            out["initialIntervalMs"] = self.initial_interval_ms
        if self.backoff_factor:
            out["backoffFactor"] = self.backoff_factor
        if self.retryable_http_codes:
            out["retryableHttpCodes"] = list(self.retryable_http_codes)
        return out


@dataclass(frozen=True)
class Webhook:
    """A webhook configuration. ``secret_token`` is held in memory only: it is never archived or shown."""

    id: str
    endpoint_url: str = ""
    event_types: list[str] = field(default_factory=list)
    secret_token: str = field(default="", repr=False)
    content_type: str = "CONTENT_TYPE_JSON"
    retry_policy: RetryPolicy | None = None
    is_active: bool = False
    verify_ssl: bool = False
    headers: Headers = field(default_factory=dict)
    organizations: list[Organization] = field(default_factory=list)
    created_time: datetime | None = None
    updated_time: datetime | None = None

    @classmethod
    def from_json(cls, msg: Any) -> "Webhook":
        msg = _obj(msg, "webhook")
        return cls(
            id=_str(msg, "id"),
            endpoint_url=_str(msg, "endpointUrl"),
            event_types=_str_list(msg, "eventTypes"),
            secret_token=_str(msg, "secretToken"),
            content_type=_str(msg, "contentType") or "CONTENT_TYPE_JSON",
            retry_policy=_display_only(RetryPolicy.from_json, msg.get("retryPolicy"), None),
            is_active=_bool(msg, "isActive"),
            verify_ssl=_bool(msg, "verifySsl"),
            headers=_headers(msg, "headers"),
            organizations=_display_only(lambda v: [Organization.from_json(o) for o in _list(v, "organizations")],
                                        msg.get("organizations"), []),
            created_time=_optional_time(msg, "createdTime"),
            updated_time=_optional_time(msg, "updatedTime"),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery log entry: an attempt to POST an event to a webhook's endpoint."""

    id: str
    webhook_id: str = ""
    event_type: str = ""
    event_id: str = ""
    request_url: str = ""
    delivered_to: str = ""
    request_headers: Headers = field(default_factory=dict)
    request_body: bytes = b""
    response_status: int = 0
    response_headers: Headers = field(default_factory=dict)
    response_body: bytes = b""
    delivered_at: datetime | None = None
    duration_ms: int = 0
    success: bool = False
    error: str = ""
    retry_count: int = 0
    request_format: str = ""
    response_format: str = ""

    @classmethod
    def from_json(cls, msg: Any) -> "WebhookDelivery":
        msg = _obj(msg, "delivery")
        delivery_id = _str(msg, "id")
        if not delivery_id:
            raise MalformedMessage("delivery without an id")
        return cls(
            id=delivery_id,
            webhook_id=_str(msg, "webhookId"),
            event_type=_str(msg, "eventType"),
            event_id=_str(msg, "eventId"),
            request_url=_str(msg, "requestUrl"),
            delivered_to=_str(msg, "deliveredTo"),
            request_headers=_headers(msg, "requestHeaders"),
            request_body=parse_bytes(msg.get("requestBody"), name="requestBody"),
            response_status=_int(msg, "responseStatus"),
            response_headers=_headers(msg, "responseHeaders"),
            response_body=parse_bytes(msg.get("responseBody"), name="responseBody"),
            delivered_at=_optional_time(msg, "deliveredAt"),
            duration_ms=_int(msg, "durationMs"),
            success=_bool(msg, "success"),
            error=_str(msg, "error"),
            retry_count=_int(msg, "retryCount"),
            request_format=_str(msg, "requestFormat"),
            response_format=_str(msg, "responseFormat"),
        )
