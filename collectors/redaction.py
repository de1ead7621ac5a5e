"""Keep secrets out of everything moego-monitor writes or shows.

Secret-like header values (``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``,
``X-Api-Key``, MoeGo's signature headers, and any names the user adds) are replaced by
:data:`REDACTED` before a row reaches the archive; a webhook's secret token is reduced to a short
fingerprint that tells a rotation apart and reveals nothing usable.

Error text is scrubbed by :func:`scrub_secrets` before it is stored (``collector_runs.error``,
``sync_state.last_error``) or printed: MoeGo or a proxy may echo the request's ``Authorization``
header, or the key itself, in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Iterable, Mapping
from urllib.parse import quote

__all__ = [
    "REDACTED", "DEFAULT_SECRET_HEADERS", "redact_headers", "secret_fingerprint", "is_secret_header", "scrub_secrets",
]

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


#: Forms of a secret shorter than this are not searched for (a one-letter test key would blank every such letter).
MIN_SECRET_CHARS = 6

# An HTTP credential as it appears in a header or its echo: the scheme and everything up to the next blank or quote.
_CREDENTIAL = re.compile(r"(?i)\b(basic|bearer|digest|token)(\s+|%20|\+)[^\s\"'<>,;]+")


def _forms(secret: str) -> set[str]:
    """The ways ``secret`` may appear in echoed text: itself, percent-encoded, and base64 as Basic auth sends it."""
    forms = {secret, quote(secret, safe="")}
    for raw in (secret, f"{secret}:", f":{secret}"):
        encoded = base64.b64encode(raw.encode()).decode("ascii")
        forms.update({encoded, encoded.rstrip("="), base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")})
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every ``Basic``/``Bearer`` credential and every form of each secret replaced by :data:`REDACTED`.

    The one function every error line goes through before it is stored or printed. Secrets are the
    API key (and any other value known to be secret); forms shorter than :data:`MIN_SECRET_CHARS`
    are ignored. Longest forms are
    replaced first, so a key inside its own base64 cannot leave a fragment behind.
    """
    out = _CREDENTIAL.sub(lambda m: f"{m.group(1)} {REDACTED}", str(text))
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= _forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, REDACTED)
    return out
