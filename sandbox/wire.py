"""What goes over the wire to a receiving endpoint: the body bytes and the header set.

Headers: ``User-Agent: Moego/Webhook-1.0``, ``Content-Type: application/json``, ``X-Moe-Client-Id``,
``X-Moe-Event-Type``, ``X-Moe-Delivery-ID``, ``X-Moe-Webhook-ID``, ``X-Moe-Nonce``, ``X-Moe-Timestamp``
(Unix ms) and, when the webhook has a secret token, ``X-Moe-Signature`` (base64 HMAC-SHA1) and
``X-Moe-Signature-256`` (base64 HMAC-SHA256), both over ``clientId + nonce + timestamp + body``;
plus the webhook's custom headers (which never override the ones above).

The signature code here is the sandbox's own, deliberately independent of ``collectors.signature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from sandbox.events import Event
from sandbox.model import Headers, WebhookRecord

__all__ = ["USER_AGENT", "encode_body", "signature", "request_headers"]

USER_AGENT = "Moego/Webhook-1.0"


def encode_body(event: Event, shape: str = "guide") -> bytes:
    """The exact bytes POSTed for ``event`` in body ``shape`` (:mod:`sandbox.shapes`): compact JSON, UTF-8."""
    return json.dumps(event.body(shape), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, client_id: str, nonce: str, timestamp: str, body: bytes, digest: str) -> str:
    """Base64 HMAC (``digest`` is ``"sha1"`` or ``"sha256"``) of ``clientId + nonce + timestamp + body``."""
    message = client_id.encode() + nonce.encode() + timestamp.encode() + body
    return base64.b64encode(hmac.new(secret.encode(), message, getattr(hashlib, digest)).digest()).decode()


def request_headers(
    *,
    webhook: WebhookRecord,
    delivery_id: str,
    event_type: str,
    client_id: str,
    nonce: str,
    timestamp_ms: int,
    body: bytes,
) -> Headers:
    """The full header set of one POST, in sending order, as ``{name: [values]}``."""
    timestamp = str(timestamp_ms)
    ours: Headers = {
        "User-Agent": [USER_AGENT],
        "Content-Type": ["application/json"],
        "X-Moe-Client-Id": [client_id],
        "X-Moe-Event-Type": [event_type],
        "X-Moe-Delivery-ID": [delivery_id],
        "X-Moe-Webhook-ID": [webhook.id],
        "X-Moe-Nonce": [nonce],
        "X-Moe-Timestamp": [timestamp],
    }
    if webhook.secret_token:
        ours["X-Moe-Signature"] = [signature(webhook.secret_token, client_id, nonce, timestamp, body, "sha1")]
        ours["X-Moe-Signature-256"] = [
            signature(webhook.secret_token, client_id, nonce, timestamp, body, "sha256")
        ]
    reserved = {name.lower() for name in ours} | {"host", "content-length", "transfer-encoding", "connection"}
    custom = {name: list(values) for name, values in webhook.headers.items() if name.lower() not in reserved}
    return {**custom, **ours}
