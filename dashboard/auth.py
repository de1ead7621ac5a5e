"""Who is at the console, and whether they may act: the login applied to a browser session.

:func:`sign_in` runs first on every run of ``app.py``. It returns the session's :class:`User` or draws
one screen (a login button, a one-line refusal) and stops the run, so no page, read or action is
served to anyone it refuses. The rules come from :class:`collectors.access.Access`
(``MOEGO_MONITOR_AUTH`` and family):

- ``none``: no login. Served only when Streamlit listens on loopback (``server.address``, set to
  ``127.0.0.1`` by the project's ``.streamlit/config.toml``): one local user, named ``local`` in the
  audit, an operator. Listening on any other address without a login serves nothing.
- ``oidc``: ``st.login`` against the provider in ``.streamlit/secrets.toml`` ``[auth]``; the identity is
  the ID token's e-mail (refused when the provider says it is unverified).
- ``proxy``: a reverse proxy logs people in; the identity is its user header, believed only together
  with the shared secret header (:meth:`collectors.access.Access.proxy_identity`).

The identity must be an operator or a viewer (:meth:`collectors.access.Access.role_of`); everyone else is
refused. :func:`action_blocker` says why the session may not act, and pages call it again right
before acting: a disabled button is not a permission check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NoReturn

import streamlit as st

from collectors.access import is_loopback
from collectors.config import Settings

from .safe import md

__all__ = ["User", "sign_in", "action_blocker", "LOCAL_USER"]

#: The audit's name for the one user of a console without login on loopback.
LOCAL_USER = "local"


@dataclass(frozen=True)
class User:
    """The person at the console: ``name`` as the audit records it, their role, and how they logged in."""

    name: str
    role: Literal["operator", "viewer"]
    via: Literal["local", "oidc", "proxy"]

    @property
    def is_operator(self) -> bool:
        """Operators redeliver, bulk-redeliver, send test events and collect; viewers read and export."""
        return self.role == "operator"


def _refuse(message: str, *, logout: bool = False) -> NoReturn:
    st.title("MoeGo Webhook Monitor")
    st.error(message, icon=":material/lock:")
    if logout and st.button("Log out", key="auth_logout"):
        st.logout()
    st.stop()


def _has_auth_section() -> bool:
    try:
        return bool(st.secrets.get("auth"))
    except FileNotFoundError:  # Streamlit's error for no secrets.toml, or one it cannot parse
        return False


def _oidc_user(settings: Settings) -> User:
    if not _has_auth_section():
        _refuse("MOEGO_MONITOR_AUTH=oidc, but .streamlit/secrets.toml has no [auth] section: configure the "
                "OpenID Connect provider there (see the README, 'Running it for a team').")
    if not st.user.is_logged_in:
        st.title("MoeGo Webhook Monitor")
        st.write("This console needs a login.")
        if st.button("Log in", key="auth_login", type="primary", icon=":material/login:"):
            st.login()
        st.stop()
    email = str(st.user.get("email") or "").strip()
    if not email:
        _refuse("The identity provider did not say who you are (no e-mail in the ID token): "
                "add the 'email' scope to [auth] in .streamlit/secrets.toml.", logout=True)
    if st.user.get("email_verified") is False:
        _refuse(f"The identity provider has not verified the e-mail {md(email)}: the console does not accept it.",
                logout=True)
    role = settings.access.role_of(email)
    if role is None:
        _refuse(f"{md(email)} may not use this console: ask its administrator to add you to "
                "MOEGO_MONITOR_VIEWERS or MOEGO_MONITOR_OPERATORS.", logout=True)
    return User(email.lower(), role, "oidc")


def _proxy_user(settings: Settings) -> User:
    identity = settings.access.proxy_identity(dict(st.context.headers))
    if identity is None:
        _refuse("This console answers only through its login proxy (MOEGO_MONITOR_AUTH=proxy): open it at the "
                "proxy's address.")
    role = settings.access.role_of(identity)
    if role is None:
        _refuse(f"{md(identity)} may not use this console: ask its administrator to add you to "
                "MOEGO_MONITOR_VIEWERS or MOEGO_MONITOR_OPERATORS.")
    return User(identity.lower(), role, "proxy")


def sign_in(settings: Settings) -> User:
    """The session's user, or a login/refusal screen and ``st.stop()`` (see the module docstring)."""
    mode = settings.access.auth
    if mode == "oidc":
        return _oidc_user(settings)
    if mode == "proxy":
        return _proxy_user(settings)
    address = st.get_option("server.address")
    if not is_loopback(address):
        where = f"on {address}" if address else "on every network interface"
        _refuse(f"This console listens {where} without a login, so it serves nothing: run it on 127.0.0.1 "
                "(the project's .streamlit/config.toml does) or set MOEGO_MONITOR_AUTH to oidc or proxy "
                "(README, 'Running it for a team').")
    return User(LOCAL_USER, "operator", "local")


def action_blocker(settings: Settings, user: User, *, what: str) -> str | None:
    """Why ``user`` may not ``what`` (e.g. "redeliver") from this console, in one line; ``None`` when they may."""
    if not user.is_operator:
        return f"Only operators may {what}: you are signed in as {md(user.name)} (viewer)."
    if not settings.api_key:
        return f"Set MOEGO_API_KEY to {what} from the dashboard."
    return None
