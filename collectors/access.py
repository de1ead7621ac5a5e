"""Who may use the dashboard (the operator console), as configured: the login method and the two roles.

This is the configuration half, read by :func:`collectors.config.load_settings` with everything else and
validated once; ``dashboard/auth.py`` applies it to a browser session. The rules:

| environment                      | meaning                                                                 |
|----------------------------------|-------------------------------------------------------------------------|
| ``MOEGO_MONITOR_AUTH``           | ``none`` (default): no login; served on loopback only, to one local user ("local", an operator). ``oidc``: Streamlit's ``st.login`` against the OpenID Connect provider of ``.streamlit/secrets.toml`` ``[auth]``. ``proxy``: a reverse proxy in front logs people in and passes the user name in a header. |
| ``MOEGO_MONITOR_OPERATORS``      | comma-separated identities (e-mail for ``oidc``, user name for ``proxy``) who may also act: redeliver, bulk-redeliver, send test events, collect |
| ``MOEGO_MONITOR_VIEWERS``        | comma-separated identities who may read and export; ``@example.com`` admits a whole e-mail domain, ``*`` anyone the login admits |
| ``MOEGO_MONITOR_PROXY_USER_HEADER`` | the header the proxy sets to the logged-in user (default ``X-Forwarded-User``) |
| ``MOEGO_MONITOR_PROXY_SECRET``   | a random string of 32+ characters the proxy sends in ``X-Moego-Monitor-Proxy-Secret``; requests without it are refused, so nobody who reaches the port past the proxy can claim a name |

Identities compare case-insensitively. Anyone neither operator nor viewer is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from typing import Literal, Mapping

__all__ = ["AUTH_MODES", "PROXY_SECRET_HEADER", "Access", "AccessConfigError", "load_access", "is_loopback"]

AUTH_MODES = ("none", "oidc", "proxy")
#: The header carrying :attr:`Access.proxy_secret` from the proxy to the console.
PROXY_SECRET_HEADER = "X-Moego-Monitor-Proxy-Secret"
_MIN_SECRET = 32

Role = Literal["operator", "viewer"]


class AccessConfigError(ValueError):
    """The console's login settings cannot be used (one line: which variable, what to do)."""


@dataclass(frozen=True)
class Access:
    """The console's login method and roles. ``proxy_secret`` never appears in ``repr``."""

    auth: Literal["none", "oidc", "proxy"] = "none"
    operators: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    proxy_user_header: str = "X-Forwarded-User"
    proxy_secret: str = field(default="", repr=False)

    def role_of(self, identity: str) -> Role | None:
        """``operator``, ``viewer`` or ``None`` (refused) for a logged-in identity."""
        who = identity.strip().lower()
        if not who:
            return None
        if who in self.operators:
            return "operator"
        for entry in self.viewers:
            if entry == "*" or entry == who or (entry.startswith("@") and who.endswith(entry)):
                return "viewer"
        return None

    def proxy_identity(self, headers: Mapping[str, str]) -> str | None:
        """The user the proxy vouches for in ``headers`` (case-insensitive names), or ``None`` when the
        request did not come through the proxy (secret missing or wrong) or names nobody."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        sent = lowered.get(PROXY_SECRET_HEADER.lower(), "")
        if not self.proxy_secret or not hmac.compare_digest(sent.encode(), self.proxy_secret.encode()):
            return None
        user = lowered.get(self.proxy_user_header.lower(), "").strip()
        return user[:320] or None


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))


def load_access(env: Mapping[str, str]) -> Access:
    """Read and validate the ``MOEGO_MONITOR_AUTH`` family of variables (see the module's table)."""
    auth = (env.get("MOEGO_MONITOR_AUTH") or "none").strip().lower()
    if auth not in AUTH_MODES:
        raise AccessConfigError(f"MOEGO_MONITOR_AUTH must be one of {', '.join(AUTH_MODES)}, got {auth[:40]!r}")
    operators = _names(env.get("MOEGO_MONITOR_OPERATORS", ""))
    viewers = _names(env.get("MOEGO_MONITOR_VIEWERS", ""))
    header = (env.get("MOEGO_MONITOR_PROXY_USER_HEADER") or "X-Forwarded-User").strip()
    secret = (env.get("MOEGO_MONITOR_PROXY_SECRET") or "").strip()
    if auth != "none" and not operators and not viewers:
        raise AccessConfigError(f"MOEGO_MONITOR_AUTH={auth} needs MOEGO_MONITOR_OPERATORS or MOEGO_MONITOR_VIEWERS: "
                                "otherwise nobody may use the console")
    if auth == "proxy" and len(secret) < _MIN_SECRET:
        raise AccessConfigError(f"MOEGO_MONITOR_AUTH=proxy needs MOEGO_MONITOR_PROXY_SECRET of at least {_MIN_SECRET} "
                                "random characters (e.g. from 'openssl rand -hex 32'), sent by the proxy in "
                                f"{PROXY_SECRET_HEADER}")
    if auth == "proxy" and (not header or not all(c.isalnum() or c == "-" for c in header)):
        raise AccessConfigError(f"MOEGO_MONITOR_PROXY_USER_HEADER is not a header name: {header[:40]!r}")
    return Access(auth=auth, operators=operators, viewers=viewers, proxy_user_header=header,  # type: ignore[arg-type]
                  proxy_secret=secret)


def is_loopback(address: str | None) -> bool:
    """True when a listen address (Streamlit's ``server.address``) only accepts this host's connections.

    An empty address means every interface: not loopback.
    """
    text = (address or "").strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False
