"""proto3 JSON, as grpc-gateway writes and reads it, for the sandbox's messages.

Writing: lowerCamelCase names; a field holding its default value (``""``, ``0``, ``false``, empty
list or map) is OMITTED; ``int64`` as a JSON string; ``bytes`` as standard base64; timestamps as
RFC 3339 UTC with 0, 3, 6 or 9 fractional digits (as Go's ``protojson`` does); enums as names.

Reading: the ``read_*`` helpers take a value from a request message and raise INVALID_ARGUMENT
(:class:`sandbox.errors.ApiError`) when it has the wrong JSON type; ``null`` reads as absent.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import time
from collections.abc import Mapping
from typing import Any

from sandbox.errors import invalid_argument
from sandbox.model import DeliveryRecord, Headers, WebhookRecord

__all__ = [
    "format_timestamp",
    "parse_timestamp",
    "b64",
    "headers_json",
    "webhook_json",
    "delivery_json",
    "read_object",
    "read_str",
    "read_int",
    "read_bool",
    "read_str_list",
    "read_headers",
    "read_bytes",
    "read_interval",
]

_NS = 1_000_000_000
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


def format_timestamp(ns: int) -> str:
    """``ns`` since the epoch as RFC 3339 UTC, e.g. ``2025-06-30T11:58:36.740351808Z``."""
    seconds, nanos = divmod(ns, _NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{text}.{nanos // 1_000:06d}Z"
    return f"{text}.{nanos:09d}Z"


def parse_timestamp(value: Any, name: str) -> int:
    """An RFC 3339 timestamp (any offset, up to nanoseconds) as ns since the epoch; else INVALID_ARGUMENT."""
    if not isinstance(value, str):
        raise invalid_argument(f"{name}: expected an RFC 3339 timestamp string")
    m = _RFC3339.match(value)
    if not m:
        raise invalid_argument(f"{name}: not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    try:
        seconds = calendar.timegm(
            (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
        )
        time.strptime(f"{year}-{month}-{day}", "%Y-%m-%d")  # refuses Feb 30 and friends
    except ValueError as exc:
        raise invalid_argument(f"{name}: impossible date in {value!r}") from exc
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        raise invalid_argument(f"{name}: impossible time in {value!r}")
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return seconds * _NS + int((frac or "0").ljust(9, "0"))


def b64(data: bytes) -> str:
    """Standard base64 with padding, proto3 JSON's form of ``bytes``."""
    return base64.b64encode(data).decode("ascii")


def headers_json(headers: Headers) -> dict[str, Any]:
    """``{name: [values]}`` as ``{name: {"values": [..]}}``; an empty list of values is omitted."""
    return {name: {"values": list(values)} for name, values in headers.items() if values}


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Set ``out[key]`` unless ``value`` is a proto3 default (omitted on the wire).

    Enum zero values (``*_UNSPECIFIED`` in MoeGo's protos) are defaults too.
    """
    if value is None or value is False or value in ("", [], {}) or (type(value) is int and value == 0):
        return
    if isinstance(value, str) and value.endswith("_UNSPECIFIED"):
        return
    out[key] = value


def webhook_json(w: WebhookRecord) -> dict[str, Any]:
    """A webhook as the API's ``Webhook`` message."""
    out: dict[str, Any] = {"id": w.id}
    orgs = []
    for org_id, org_type in w.organizations:
        org: dict[str, Any] = {}
        _put(org, "id", org_id)
        _put(org, "type", org_type)
        orgs.append(org)
    _put(out, "organizations", orgs)
    _put(out, "eventTypes", list(w.event_types))
    _put(out, "endpointUrl", w.endpoint_url)
    _put(out, "secretToken", w.secret_token)
    _put(out, "contentType", w.content_type)
    policy: dict[str, Any] = {}
    _put(policy, "maxRetries", w.retry_policy.max_retries)
    _put(policy, "initialIntervalMs", w.retry_policy.initial_interval_ms)
    _put(policy, "backoffFactor", w.retry_policy.backoff_factor)
    _put(policy, "retryableHttpCodes", list(w.retry_policy.retryable_http_codes))
    out["retryPolicy"] = policy  # a set message field is emitted even when all its fields are defaults
    _put(out, "isActive", w.is_active)
    _put(out, "verifySsl", w.verify_ssl)
    _put(out, "headers", headers_json(w.headers))
    _put(out, "createdTime", format_timestamp(w.created_ns) if w.created_ns else "")
    _put(out, "updatedTime", format_timestamp(w.updated_ns) if w.updated_ns else "")
    return out


def delivery_json(d: DeliveryRecord) -> dict[str, Any]:
    """A delivery log entry as the API's ``WebhookDelivery`` message."""
    out: dict[str, Any] = {"id": d.id}
    _put(out, "webhookId", d.webhook_id)
    _put(out, "eventType", d.event_type)
    _put(out, "eventId", d.event_id)
    _put(out, "requestUrl", d.request_url)
    _put(out, "deliveredTo", d.delivered_to)
    _put(out, "requestHeaders", headers_json(d.request_headers))
    _put(out, "requestBody", b64(d.request_body))
    _put(out, "responseStatus", d.response_status)
    _put(out, "responseHeaders", headers_json(d.response_headers))
    _put(out, "responseBody", b64(d.response_body))
    _put(out, "deliveredAt", format_timestamp(d.delivered_at_ns) if d.delivered_at_ns else "")
    _put(out, "durationMs", str(d.duration_ms) if d.duration_ms else "")
    _put(out, "success", d.success)
    _put(out, "error", d.error)
    _put(out, "retryCount", d.retry_count)
    _put(out, "requestFormat", d.request_format)
    _put(out, "responseFormat", d.response_format)
    return out


# ---------------------------------------------------------------------------------------------
# Reading request messages


def read_object(msg: Mapping[str, Any], key: str, name: str | None = None) -> dict[str, Any] | None:
    """A nested message, or None when absent or null."""
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_argument(f"{name or key}: expected a JSON object")
    return value


def read_str(msg: Mapping[str, Any], key: str, name: str | None = None) -> str | None:
    """A string field, or None when absent or null."""
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_argument(f"{name or key}: expected a string")
    return value


def read_int(msg: Mapping[str, Any], key: str, name: str | None = None) -> int | None:
    """An integer field (a JSON number or a decimal string, as protojson accepts), or None."""
    value = msg.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise invalid_argument(f"{name or key}: expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value):
        return int(value)
    raise invalid_argument(f"{name or key}: expected an integer")


def read_bool(msg: Mapping[str, Any], key: str, name: str | None = None) -> bool | None:
    """A boolean field, or None when absent or null (so presence can be a filter)."""
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid_argument(f"{name or key}: expected true or false")
    return value


def read_str_list(msg: Mapping[str, Any], key: str, name: str | None = None) -> list[str] | None:
    """A list of strings, or None when absent or null."""
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_argument(f"{name or key}: expected a list of strings")
    return list(value)


def read_headers(msg: Mapping[str, Any], key: str) -> Headers | None:
    """A ``{name: {"values": [..]}}`` map as ``{name: [..]}``, or None when absent."""
    raw = read_object(msg, key)
    if raw is None:
        return None
    out: Headers = {}
    for header, holder in raw.items():
        if not isinstance(holder, dict):
            raise invalid_argument(f'{key}.{header}: expected {{"values": [...]}}')
        values = read_str_list(holder, "values", f"{key}.{header}.values") or []
        if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", header):
            raise invalid_argument(f"{key}: invalid header name {header!r}")
        if any("\r" in v or "\n" in v for v in values):
            raise invalid_argument(f"{key}.{header}: header values cannot contain line breaks")
        out[header] = values
    return out


def read_bytes(msg: Mapping[str, Any], key: str) -> bytes | None:
    """A base64 ``bytes`` field (standard or URL-safe, padding optional), or None when absent."""
    value = read_str(msg, key)
    if value is None:
        return None
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid_argument(f"{key}: not valid base64") from exc


def read_interval(msg: Mapping[str, Any], key: str) -> tuple[int | None, int | None] | None:
    """An Interval ``{startTime, endTime}`` as ns (either end optional), or None when absent."""
    raw = read_object(msg, key)
    if raw is None:
        return None
    start = raw.get("startTime")
    end = raw.get("endTime")
    return (
        parse_timestamp(start, f"{key}.startTime") if start is not None else None,
        parse_timestamp(end, f"{key}.endTime") if end is not None else None,
    )
