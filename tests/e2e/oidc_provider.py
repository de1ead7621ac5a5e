"""A minimal OpenID Connect provider on loopback, for the console's login test: what Streamlit's ``st.login``
(Authlib) needs of Google or Okta, and nothing more.

It serves the discovery document, a sign-in page (a form asking for an e-mail, as an identity provider's
login screen would), the authorization-code redirect back to the console, the token endpoint (an RS256 ID token
carrying the request's nonce, the e-mail and ``email_verified``) and the JWKS. An e-mail starting with
``unverified`` is issued with ``email_verified: false``. Every code works once.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt  # Authlib's own JOSE library (a dependency of streamlit[auth])
from joserfc.jwk import RSAKey

CLIENT_ID = "moego-monitor-e2e"
CLIENT_SECRET = "e2e-client-secret-0123456789"


class OidcProvider:
    """``with OidcProvider() as idp:`` serves on ``idp.url``; ``idp.issued`` lists the e-mails it issued tokens for."""

    def __init__(self) -> None:
        self._key = RSAKey.generate_key(2048, parameters={"kid": "e2e-1"}, private=True)
        self._codes: dict[str, dict[str, str]] = {}
        self.issued: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, value: object, status: int = 200) -> None:
                self._send(status, json.dumps(value).encode(), "application/json")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/openid-configuration":
                    self._json(provider.discovery())
                elif parts.path == "/jwks":
                    self._json({"keys": [provider._key.as_dict(is_private=False)]})
                elif parts.path == "/authorize":
                    fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                     for k, v in query.items())
                    page = (f"<html><body><h1>Example identity provider</h1><form method='post' action='/authorize'>"
                            f"{fields}<label>E-mail <input name='login_email' type='email'></label>"
                            f"<button type='submit'>Sign in</button></form></body></html>")
                    self._send(200, page.encode(), "text/html; charset=utf-8")
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                path = urlsplit(self.path).path
                if path == "/authorize":
                    code = secrets.token_urlsafe(16)
                    provider._codes[code] = {"email": form.get("login_email", ""), "nonce": form.get("nonce", ""),
                                             "redirect_uri": form["redirect_uri"]}
                    target = form["redirect_uri"] + "?" + urlencode({"code": code, "state": form.get("state", "")})
                    self._send(302, b"", "text/plain", {"Location": target})
                elif path == "/token":
                    grant = provider._codes.pop(form.get("code", ""), None)
                    if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                        self._json({"error": "invalid_grant"}, 400)
                        return
                    self._json(provider.tokens(grant))
                else:
                    self._json({"error": "not_found"}, 404)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)

    def discovery(self) -> dict[str, object]:
        """The provider's ``/.well-known/openid-configuration``."""
        return {
            "issuer": self.url, "authorization_endpoint": f"{self.url}/authorize", "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def tokens(self, grant: dict[str, str]) -> dict[str, object]:
        """The token endpoint's answer for a code: an access token and a signed ID token."""
        now = int(time.time())
        email = grant["email"]
        claims = {"iss": self.url, "sub": f"user-{email}", "aud": CLIENT_ID, "iat": now, "exp": now + 600,
                  "nonce": grant["nonce"], "email": email, "email_verified": not email.startswith("unverified")}
        id_token = jwt.encode({"alg": "RS256", "kid": "e2e-1"}, claims, self._key)
        self.issued.append(email)
        return {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 600,
                "id_token": id_token, "scope": "openid email profile"}

    def secrets_toml(self, console_url: str) -> str:
        """The console's ``.streamlit/secrets.toml`` for this provider."""
        return (f'[auth]\nredirect_uri = "{console_url}/oauth2callback"\ncookie_secret = "{secrets.token_hex(32)}"\n'
                f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
                f'server_metadata_url = "{self.url}/.well-known/openid-configuration"\n')

    def __enter__(self) -> "OidcProvider":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
