"""Who may use the console (#11 item 1), in AppTest on a seeded archive: loopback without login, OpenID Connect
logins with the two roles, the proxy login, and a console exposed without login serving nothing.

``st.user`` is seeded through ``AppTest.user`` (what Streamlit's ``st.login`` leaves after the provider's
redirect); ``st.secrets`` through ``AppTest.secrets``; the listen address through Streamlit's own option.
Actions that reach MoeGo with an operator's name are in ``test_app_actions.py`` (they need the sandbox).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.access import Access, AccessConfigError, PROXY_SECRET_HEADER, is_loopback, load_access

from tests.seed import Seed

from .test_app import no_exception, read

OIDC_SECRETS = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                         "client_id": "moego-monitor", "client_secret": "not-used-in-tests",
                         "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}}
TEAM = {"MOEGO_MONITOR_AUTH": "oidc", "MOEGO_MONITOR_OPERATORS": "olivia@example.com",
        "MOEGO_MONITOR_VIEWERS": "victor@example.com, @audit.example.com"}


def logged_in(email: str, **claims: object) -> dict:
    return {"is_logged_in": True, "email": email, "email_verified": True, **claims}


def served(at) -> bool:
    """Whether the run drew the dashboard (the sidebar filters and a page), not a login or refusal screen."""
    return bool(at.sidebar.selectbox) and any(t.value in ("Overview", "Deliveries", "Archive health", "Webhooks")
                                              for t in at.title)


# -- bound to loopback without a login: one local user ------------------------------------------------


def test_loopback_without_login_serves_the_local_user_as_operator(run_app, live_seed: Seed, listen_on) -> None:
    listen_on("127.0.0.1")
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_r2"}, api_key="key")
    no_exception(at)
    assert served(at)
    assert "Local use on this machine, no login (operator)" in [c.value for c in at.sidebar.caption]
    assert not at.button(key="redeliver").disabled


@pytest.mark.parametrize("address", ["0.0.0.0", "", "192.168.1.20", "::"])
def test_exposed_without_login_serves_nothing(run_app, live_seed: Seed, listen_on, address: str) -> None:
    listen_on(address)
    at = run_app(live_seed.path, api_key="key")
    no_exception(at)
    where = f"on {address}" if address else "on every network interface"
    assert [e.value for e in at.error] == [
        f"This console listens {where} without a login, so it serves nothing: run it on 127.0.0.1 (the project's "
        ".streamlit/config.toml does) or set MOEGO_MONITOR_AUTH to oidc or proxy (README, 'Running it for a team')."]
    assert not served(at) and not at.metric and not at.dataframe


def test_the_project_config_binds_loopback() -> None:
    """Every `streamlit run` from the project folder reads .streamlit/config.toml: it must say loopback."""
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    assert is_loopback(config["server"]["address"])


def test_the_project_config_keeps_tracebacks_and_developer_menus_out_of_the_browser() -> None:
    """What `streamlit run` from the project folder resolves (its own `config show`): no developer toolbar, and an
    unexpected error's type only in the browser (its message and traceback stay in the log)."""
    shown = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=Path(__file__).resolve().parents[2],
                           env={k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")},
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert 'toolbarMode = "minimal"' in shown.splitlines()
    assert 'showErrorDetails = "type"' in shown.splitlines()


# -- OpenID Connect: st.login ---------------------------------------------------------------------------


def test_oidc_asks_to_log_in_and_shows_nothing_before(run_app, live_seed: Seed, listen_on) -> None:
    listen_on("0.0.0.0")  # exposed on purpose: the login guards it
    at = run_app(live_seed.path, env=TEAM, secrets=OIDC_SECRETS, user={"is_logged_in": False})
    no_exception(at)
    assert at.button(key="auth_login").label == "Log in"
    assert not served(at) and not at.metric and not at.dataframe


def test_oidc_without_an_auth_section_is_one_line(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, env=TEAM, user=logged_in("olivia@example.com"))
    no_exception(at)
    assert [e.value for e in at.error] == [
        "MOEGO_MONITOR_AUTH=oidc, but .streamlit/secrets.toml has no [auth] section: configure the OpenID Connect "
        "provider there (see the README, 'Running it for a team')."]
    assert not served(at)


def test_a_viewer_reads_and_exports_but_cannot_act(run_app, live_seed: Seed, listen_on) -> None:
    listen_on("0.0.0.0")
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_r2"}, api_key="key", env=TEAM,
                 secrets=OIDC_SECRETS, user=logged_in("Victor@Example.com"))
    no_exception(at)
    assert served(at)
    assert "Signed in as victor@example.com (viewer)" in [read(c.value) for c in at.sidebar.caption]
    assert not at.get("download_button")[0].disabled  # export: yes
    redeliver = at.button(key="redeliver")
    assert redeliver.disabled and read(redeliver.help) == "Only operators may redeliver: you are signed in as victor@example.com (viewer)."
    assert "Only operators may redeliver: you are signed in as victor@example.com (viewer)." in [
        read(i.value) for i in at.info]  # the bulk panel
    health = run_app(live_seed.path, page="views/archive_health.py", api_key="key", env=TEAM, secrets=OIDC_SECRETS,
                     user=logged_in("victor@example.com"))
    assert health.button(key="collect_now").disabled
    hooks = run_app(live_seed.path, page="views/webhooks.py", api_key="key", env=TEAM, secrets=OIDC_SECRETS,
                    user=logged_in("victor@example.com"))
    assert "Only operators may send test events: you are signed in as victor@example.com (viewer)." in [
        read(i.value) for i in hooks.info]
    assert not hooks.get("form")


def test_a_viewer_forging_a_click_on_a_disabled_button_changes_nothing(run_app, live_seed: Seed) -> None:
    """The button is disabled in the browser, but a crafted websocket message can still 'click' it: nothing
    happens (Streamlit drops such clicks, and the page checks the role again before acting)."""
    at = run_app(live_seed.path, page="views/archive_health.py", api_key="key", base_url="http://127.0.0.1:9",
                 env=TEAM, secrets=OIDC_SECRETS, user=logged_in("victor@example.com"))
    runs_before = table_rows(at)
    button = at.button(key="collect_now")
    assert button.disabled
    button.proto.disabled = False  # what a client that ignores "disabled" and sends the click anyway amounts to
    button.click().run()
    no_exception(at)
    assert not [s.value for s in at.success if "Collected" in s.value]
    assert table_rows(at) == runs_before  # no collector run was started, not even a failed one


def table_rows(at) -> int:
    return next(len(f.value) for f in at.dataframe if "trigger" in f.value.columns)


def test_a_whole_domain_of_viewers(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, env=TEAM, secrets=OIDC_SECRETS, user=logged_in("ana@audit.example.com"))
    no_exception(at)
    assert served(at)
    assert "Signed in as ana@audit.example.com (viewer)" in [read(c.value) for c in at.sidebar.caption]


@pytest.mark.parametrize(("user", "message"), [
    (logged_in("mallory@example.org"),
     "mallory@example.org may not use this console: ask its administrator to add you to MOEGO_MONITOR_VIEWERS or "
     "MOEGO_MONITOR_OPERATORS."),
    (logged_in("mallory@evil-audit.example.com"),
     "mallory@evil-audit.example.com may not use this console: ask its administrator to add you to "
     "MOEGO_MONITOR_VIEWERS or MOEGO_MONITOR_OPERATORS."),
    (logged_in("olivia@example.com", email_verified=False),
     "The identity provider has not verified the e-mail olivia@example.com: the console does not accept it."),
    ({"is_logged_in": True, "name": "No Mail"},
     "The identity provider did not say who you are (no e-mail in the ID token): add the 'email' scope to [auth] "
     "in .streamlit/secrets.toml."),
], ids=["not listed", "lookalike domain", "unverified e-mail", "no e-mail"])
def test_oidc_refuses_anyone_not_listed(run_app, live_seed: Seed, user: dict, message: str) -> None:
    at = run_app(live_seed.path, env=TEAM, secrets=OIDC_SECRETS, user=user)
    no_exception(at)
    assert [read(e.value) for e in at.error] == [message]
    assert at.button(key="auth_logout").label == "Log out"
    assert not served(at) and not at.metric


def test_an_identity_is_shown_as_text(run_app, live_seed: Seed) -> None:
    """An identity comes from outside (the provider, the proxy): in a Markdown element it cannot become a link."""
    sneaky = "[x](https://evil.example/)@example.org"
    at = run_app(live_seed.path, env=TEAM, secrets=OIDC_SECRETS, user=logged_in(sneaky))
    [line] = [e.value for e in at.error]
    assert "](" not in line.replace("\\]\\(", "") and read(line).startswith(sneaky.lower())


# -- the proxy login ------------------------------------------------------------------------------------


def test_proxy_mode_refuses_a_session_that_did_not_come_through_the_proxy(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, env={"MOEGO_MONITOR_AUTH": "proxy", "MOEGO_MONITOR_OPERATORS": "olivia",
                                      "MOEGO_MONITOR_PROXY_SECRET": "s" * 40})
    no_exception(at)
    assert [e.value for e in at.error] == [
        "This console answers only through its login proxy (MOEGO_MONITOR_AUTH=proxy): open it at the proxy's address."]
    assert not served(at)


def test_proxy_identity_needs_the_shared_secret() -> None:
    access = Access(auth="proxy", operators=("olivia",), proxy_secret="s" * 40)
    assert access.proxy_identity({"X-Forwarded-User": "olivia", PROXY_SECRET_HEADER: "s" * 40}) == "olivia"
    assert access.proxy_identity({"x-forwarded-user": "olivia", PROXY_SECRET_HEADER.lower(): "s" * 40}) == "olivia"
    assert access.proxy_identity({"X-Forwarded-User": "olivia"}) is None  # straight to the port, past the proxy
    assert access.proxy_identity({"X-Forwarded-User": "olivia", PROXY_SECRET_HEADER: "s" * 39}) is None
    assert access.proxy_identity({PROXY_SECRET_HEADER: "s" * 40}) is None  # nobody named


# -- configuration --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "message"), [
    ({"MOEGO_MONITOR_AUTH": "ldap"}, "MOEGO_MONITOR_AUTH must be one of none, oidc, proxy, got 'ldap'"),
    ({"MOEGO_MONITOR_AUTH": "oidc"},
     "MOEGO_MONITOR_AUTH=oidc needs MOEGO_MONITOR_OPERATORS or MOEGO_MONITOR_VIEWERS: otherwise nobody may use the console"),
    ({"MOEGO_MONITOR_AUTH": "proxy", "MOEGO_MONITOR_OPERATORS": "olivia", "MOEGO_MONITOR_PROXY_SECRET": "short"},
     "MOEGO_MONITOR_AUTH=proxy needs MOEGO_MONITOR_PROXY_SECRET of at least 32 random characters (e.g. from 'openssl "
     "rand -hex 32'), sent by the proxy in X-Moego-Monitor-Proxy-Secret"),
])
def test_bad_login_settings_are_one_line(run_app, live_seed: Seed, env: dict, message: str) -> None:
    with pytest.raises(AccessConfigError) as raised:
        load_access(env)
    assert str(raised.value) == message
    at = run_app(live_seed.path, env=env)
    no_exception(at)
    assert [e.value for e in at.error] == [f"Configuration problem: {message}"]


def test_roles() -> None:
    access = load_access({"MOEGO_MONITOR_AUTH": "oidc", "MOEGO_MONITOR_OPERATORS": " Olivia@Example.com ,",
                          "MOEGO_MONITOR_VIEWERS": "@example.com"})
    assert access.role_of("olivia@example.com") == "operator"
    assert access.role_of("victor@example.com") == "viewer"
    assert access.role_of("victor@example.com.evil.org") is None
    assert access.role_of("") is None
    assert load_access({"MOEGO_MONITOR_AUTH": "proxy", "MOEGO_MONITOR_VIEWERS": "*",
                        "MOEGO_MONITOR_PROXY_SECRET": "s" * 32}).role_of("anyone") == "viewer"
    assert "s" * 32 not in repr(load_access({"MOEGO_MONITOR_AUTH": "proxy", "MOEGO_MONITOR_VIEWERS": "*",
                                             "MOEGO_MONITOR_PROXY_SECRET": "s" * 32}))


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.0.0.2", True),
    ("", False), (None, False), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.com", False),
])
def test_what_counts_as_loopback(address, loopback: bool) -> None:
    assert is_loopback(address) is loopback
