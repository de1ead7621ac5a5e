"""The client through the proxy the environment names (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), on real
loopback sockets: MoeGo is reached through it, the call's deadline still bounds it, this machine (the sandbox)
is never proxied, and a proxy that cannot be used is a one-line error that does not show its password."""

from __future__ import annotations

import socket

import pytest

from collectors import client as api
from collectors.config import ConfigError
from tests.collectors.hostile import HostileRequest, HostileServer, send_head, send_json, silent_listener

KEY = "moego-secret-key-1234"


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def make(base_url: str, *, deadline_s: float = 5.0, timeout_s: float = 30.0) -> api.MoeGoClient:
    http = api.make_http_client(base_url, KEY, timeout_s=timeout_s)
    return api.MoeGoClient(http, retry=api.RetryConfig(attempts=1), deadline_s=deadline_s)


def answer_webhooks(request: HostileRequest, conn: socket.socket) -> None:
    send_json(conn, {"webhooks": [{"id": "whk_1", "endpointUrl": "https://receiver.example/hook"}]})


def test_moego_is_reached_through_the_http_proxy_the_environment_names(monkeypatch) -> None:
    with HostileServer(answer_webhooks) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        # moego.invalid never resolves: the answer can only have come through the proxy.
        with make("http://moego.invalid") as client:
            hooks = list(client.list_webhooks())
    assert [h.id for h in hooks] == ["whk_1"]
    [request] = proxy.requests
    assert (request.method, request.path) == ("POST", "http://moego.invalid/v1/webhooks:list")
    assert request.headers["host"] == "moego.invalid"


def test_an_https_moego_is_tunnelled_through_https_proxy(monkeypatch) -> None:
    def refuse_tunnel(request: HostileRequest, conn: socket.socket) -> None:
        send_head(conn, 403, {"Content-Length": "0"})

    with HostileServer(refuse_tunnel) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.base_url)
        with make("https://moego.invalid") as client, pytest.raises(api.MoeGoError) as info:
            list(client.list_webhooks())
    assert [(r.method, r.path) for r in proxy.requests] == [("CONNECT", "moego.invalid:443")]
    assert "\n" not in str(info.value) and KEY not in str(info.value)


def test_a_proxy_that_never_answers_ends_the_call_at_its_deadline(monkeypatch) -> None:
    with silent_listener() as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        with make("http://moego.invalid", deadline_s=1.5, timeout_s=30) as client:
            with pytest.raises(api.MoeGoError) as info:
                list(client.list_webhooks())
    # Not the 30 s read timeout's error: the deadline bounds the connection to the proxy too.
    assert isinstance(info.value, api.DeadlineExceeded)


def test_this_machine_is_never_proxied(monkeypatch) -> None:
    with silent_listener() as proxy_url, HostileServer(answer_webhooks) as sandbox:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("ALL_PROXY", proxy_url)
        with make(sandbox.base_url, deadline_s=5) as client:
            assert [h.id for h in client.list_webhooks()] == ["whk_1"]
    assert [r.path for r in sandbox.requests] == ["/v1/webhooks:list"]


def test_no_proxy_sends_a_host_direct(monkeypatch) -> None:
    with silent_listener() as proxy_url:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "openapi.example")
        mounts = api.proxy_mounts()
    assert mounts["all://*openapi.example"] is None


@pytest.mark.parametrize("url", ["socks5://ops:hunter2@proxy.corp:1080", "ftp://ops:hunter2@proxy.corp:21"])
def test_a_proxy_that_cannot_be_used_is_one_line_without_its_password(monkeypatch, url) -> None:
    monkeypatch.setenv("HTTPS_PROXY", url)
    with pytest.raises(ConfigError) as info:
        api.make_http_client("https://openapi.example", KEY)
    message = str(info.value)
    assert "HTTPS_PROXY" in message and "http://host:port" in message
    assert "hunter2" not in message and "\n" not in message
