"""Turn stored rows into full delivery log entries, synthesizing what compact rows leave out.

A seeded or generated row keeps an event seed instead of a body: the event, the exact body bytes,
the header set (with valid signatures for the webhook's current secret) and the receiver's answer
are rebuilt deterministically from the row, so the same row always reads the same.
"""

from __future__ import annotations

import email.utils
from urllib.parse import urlsplit

from sandbox.events import EVENT_NAMES, Identity, seeded_event
from sandbox.model import DeliveryRecord, Headers, WebhookRecord
from sandbox.profiles import canned_response
from sandbox.store import DeliveryRow, delivery_id
from sandbox.wire import encode_body, request_headers

__all__ = ["materialize", "host_port", "response_format", "event_type_name", "stored_body"]


def host_port(url: str) -> str:
    """``host:port`` of a URL, with the scheme's default port filled in."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def response_format(content_type: str) -> str:
    """The log's ``responseFormat``: a ``Webhook.ContentType`` enum name for a response content type.

    MoeGo types the field as ``Webhook.ContentType``, so a response that is none of its formats
    (HTML, plain text) is ``CONTENT_TYPE_UNSPECIFIED``: the default, omitted on the wire.
    """
    lowered = content_type.lower()
    if "json" in lowered:
        return "CONTENT_TYPE_JSON"
    if "x-www-form-urlencoded" in lowered:
        return "CONTENT_TYPE_FORM_URLENCODED"
    if "grpc" in lowered:
        return "CONTENT_TYPE_GRPC"
    return "CONTENT_TYPE_UNSPECIFIED"


def event_type_name(code: int) -> str:
    """The enum name of an event type number (the number as text if unknown)."""
    return EVENT_NAMES.get(code, str(code))


def stored_body(row: DeliveryRow, identity: Identity, shape: str = "guide") -> bytes:
    """The exact request body of ``row``: recorded for live rows, rebuilt in ``shape`` for synthesized ones."""
    if row.live is not None:
        return row.live.request_body
    event = seeded_event(row.event_seed, event_type_name(row.event_type), row.event_at, identity.company_id)
    return encode_body(event, shape)


def _synth_response(row: DeliveryRow) -> tuple[Headers, bytes, str]:
    if not row.status:
        return {}, b"", ""
    content_type, body = canned_response(row.status)
    answered_ns = row.delivered_at + row.duration_ms * 1_000_000
    headers: Headers = {
        "Content-Length": [str(len(body))],
        "Content-Type": [content_type],
        "Date": [email.utils.formatdate(answered_ns / 1e9, usegmt=True)],
        "Server": ["uvicorn"],
    }
    return headers, body, response_format(content_type)


def materialize(row: DeliveryRow, webhook: WebhookRecord, identity: Identity) -> DeliveryRecord:
    """The full log entry for ``row`` of ``webhook``."""
    event_type = event_type_name(row.event_type)
    if row.live is not None:
        live = row.live
        return DeliveryRecord(
            id=delivery_id(row.key),
            webhook_id=webhook.id,
            event_type=event_type,
            event_id=live.event_id,
            request_url=live.request_url,
            delivered_to=live.delivered_to,
            request_headers=live.request_headers,
            request_body=live.request_body,
            response_status=row.status,
            response_headers=live.response_headers,
            response_body=live.response_body,
            delivered_at_ns=row.delivered_at,
            duration_ms=row.duration_ms,
            success=row.success,
            error=row.error,
            retry_count=row.retry_count,
            request_format="CONTENT_TYPE_JSON",
            response_format=live.response_format,
        )
    event = seeded_event(row.event_seed, event_type, row.event_at, identity.company_id)
    body = encode_body(event, webhook.body_shape)
    headers = request_headers(
        webhook=webhook,
        delivery_id=delivery_id(row.key),
        event_type=event_type,
        client_id=identity.client_id,
        nonce=str(row.key % 10**18),
        timestamp_ms=row.delivered_at // 1_000_000,
        body=body,
    )
    response_headers, response_body, fmt = _synth_response(row)
    return DeliveryRecord(
        id=delivery_id(row.key),
        webhook_id=webhook.id,
        event_type=event_type,
        event_id=event.id,
        request_url=webhook.endpoint_url,
        delivered_to=host_port(webhook.endpoint_url),
        request_headers=headers,
        request_body=body,
        response_status=row.status,
        response_headers=response_headers,
        response_body=response_body,
        delivered_at_ns=row.delivered_at,
        duration_ms=row.duration_ms,
        success=row.success,
        error=row.error,
        retry_count=row.retry_count,
        request_format="CONTENT_TYPE_JSON",
        response_format=fmt,
    )
