"""Page requests and opaque page tokens.

A token is URL-safe base64 (no padding) of a small JSON object: a version, the keyset position of
the last entry returned (e.g. ``[deliveredAt ns, key]``) and a hash of the request that made it
(webhook id and filter). A token used with a different request, or one that does not decode, is
INVALID_ARGUMENT. Keyset positions, not offsets, so pages stay correct while entries arrive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.errors import invalid_argument
from sandbox.protojson import read_int, read_object, read_str

__all__ = ["MAX_PAGE_SIZE", "PageRequest", "read_pagination", "request_hash", "encode_token", "decode_token"]

MAX_PAGE_SIZE = 500
_VERSION = 1


@dataclass(frozen=True)
class PageRequest:
    """A validated ``pagination`` message."""

    size: int
    token: str


def read_pagination(body: Mapping[str, Any]) -> PageRequest:
    """``body["pagination"]``: ``pageSize`` 1..500 (required) and an optional ``pageToken``."""
    raw = read_object(body, "pagination")
    if raw is None:
        raise invalid_argument("pagination: required (pageSize 1..500)")
    size = read_int(raw, "pageSize", "pagination.pageSize")
    if size is None or not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid_argument(f"pagination.pageSize: must be between 1 and {MAX_PAGE_SIZE}, got {size or 0}")
    return PageRequest(size=size, token=read_str(raw, "pageToken", "pagination.pageToken") or "")


def request_hash(scope: Any) -> str:
    """A short stable hash of the parts of a list request a token is bound to."""
    text = json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(position: list[Any], scope_hash: str) -> str:
    """The opaque ``nextPageToken`` that resumes after ``position``."""
    raw = json.dumps({"v": _VERSION, "p": position, "h": scope_hash}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, scope_hash: str, shape: tuple[type, ...]) -> list[Any]:
    """The position inside ``token``; INVALID_ARGUMENT when garbled, foreign, or of another request."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise invalid_argument("pagination.pageToken: invalid page token") from exc
    if not isinstance(data, dict) or data.get("v") != _VERSION:
        raise invalid_argument("pagination.pageToken: invalid page token")
    position = data.get("p")
    if (
        not isinstance(position, list)
        or len(position) != len(shape)
        or not all(type(v) is t for v, t in zip(position, shape, strict=True))
    ):
        raise invalid_argument("pagination.pageToken: invalid page token")
    if data.get("h") != scope_hash:
        raise invalid_argument("pagination.pageToken: the token belongs to a request with another filter")
    return position
