"""Keep secrets out of everything moego-monitor writes or shows.

Secret-like header values (``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``,
``X-Api-Key``, MoeGo's signature headers, and any names the user adds) are replaced by
:data:`REDACTED` before a row reaches the archive; a webhook's secret token is reduced to a short
fingerprint that tells a rotation apart and reveals nothing usable.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

__all__ = ["REDACTED", "DEFAULT_SECRET_HEADERS", "redact_headers", "secret_fingerprint", "is_secret_header"]

REDACTED = "[redacted]"

#: Header names whose values are always redacted (compared without regard to case).
DEFAULT_SECRET_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-moe-signature",
        "x-moe-signature-256",
    }
)


def is_secret_header(name: str, extra: Iterable[str] = ()) -> bool:
    """True when the header ``name`` carries a secret: a default one or one of ``extra`` (any case)."""
    lower = name.strip().lower()
    return lower in DEFAULT_SECRET_HEADERS or lower in {e.strip().lower() for e in extra}


def redact_headers(headers: Mapping[str, list[str]], extra: Iterable[str] = ()) -> dict[str, list[str]]:
    """A copy of ``headers`` with every value of a secret-like header replaced by :data:`REDACTED`."""
    extra_lower = {e.strip().lower() for e in extra}
    out: dict[str, list[str]] = {}
    for name, values in headers.items():
        lower = name.lower()
        if lower in DEFAULT_SECRET_HEADERS or lower in extra_lower:
            out[name] = [REDACTED for _ in values] or [REDACTED]
        else:
            out[name] = list(values)
    return out


def secret_fingerprint(secret: str) -> str | None:
    """8 hex characters of SHA-256 over the secret, to notice a rotation; ``None`` for no secret."""
    if not secret:
        return None
    return hashlib.sha256(b"moego-monitor fingerprint\0" + secret.encode()).hexdigest()[:8]
