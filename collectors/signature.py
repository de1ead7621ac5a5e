"""Verify that a webhook request really comes from MoeGo: the public helper for integrators.

MoeGo signs ``clientId + nonce + timestamp + body`` (the raw request bytes) with HMAC keyed by the
webhook's secret token and sends the base64 digests in two headers:

- ``X-Moe-Signature-256``: HMAC-SHA256 (preferred);
- ``X-Moe-Signature``: HMAC-SHA1 (legacy).

Example, in any web framework::

    from collectors.signature import verify_request
    if not verify_request(secret, request.headers, raw_body):
        return 401

Comparisons are constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hmac
from typing import Mapping

__all__ = ["sign", "verify", "verify_request", "signed_bytes", "SIGNATURE_HEADERS"]

#: The header carrying each algorithm's signature.
SIGNATURE_HEADERS = {"sha256": "X-Moe-Signature-256", "sha1": "X-Moe-Signature"}


def signed_bytes(client_id: str, nonce: str, timestamp: str, body: bytes) -> bytes:
    """The exact bytes MoeGo signs: ``clientId + nonce + timestamp + body``."""
    return client_id.encode() + nonce.encode() + timestamp.encode() + body


def sign(secret: str, client_id: str, nonce: str, timestamp: str, body: bytes, *, algorithm: str = "sha256") -> str:
    """The base64 HMAC signature MoeGo would send for these values (``sha256`` or ``sha1``)."""
    if algorithm not in SIGNATURE_HEADERS:
        raise ValueError(f"unknown signature algorithm {algorithm!r}: use 'sha256' or 'sha1'")
    digest = hmac.new(secret.encode(), signed_bytes(client_id, nonce, timestamp, body), algorithm).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(
    signature: str | None,
    secret: str,
    client_id: str,
    nonce: str,
    timestamp: str,
    body: bytes,
    *,
    algorithm: str = "sha256",
) -> bool:
    """True when ``signature`` is the valid base64 HMAC of the request; constant-time. ``None`` is False."""
    if not signature or not secret:
        return False
    expected = sign(secret, client_id, nonce, timestamp, body, algorithm=algorithm)
    return hmac.compare_digest(signature.strip().encode(), expected.encode())


def verify_request(secret: str, headers: Mapping[str, str], body: bytes, *, algorithm: str = "sha256") -> bool:
    """Verify a received request from its headers (any letter case) and raw body bytes."""
    lower = {k.lower(): v for k, v in headers.items()}
    return verify(
        lower.get(SIGNATURE_HEADERS[algorithm].lower()),
        secret,
        lower.get("x-moe-client-id", ""),
        lower.get("x-moe-nonce", ""),
        lower.get("x-moe-timestamp", ""),
        body,
        algorithm=algorithm,
    )
