"""The client against hostile servers on real loopback sockets: size cap, total deadline, scrubbed errors, deep JSON.

Deadlines here are a second or two; each test's server would keep a call alive far longer
(forever, or until the test's server gives up after several seconds), so a call that ends early
is the deadline working, not a fast machine.
"""

from __future__ import annotations

import base64
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from collectors import client as api
from tests.collectors.hostile import HostileRequest, HostileServer, send_head, send_json, silent_listener

KEY = "moego-secret-key-1234"
B64 = base64.b64encode(KEY.encode()).decode()


def make(base_url: str, *, deadline_s: float = 2.0, timeout_s: float = 10.0, attempts: int = 1) -> api.MoeGoClient:
    http = api.make_http_client(base_url, KEY, timeout_s=timeout_s)
    return api.MoeGoClient(http, retry=api.RetryConfig(attempts=attempts, base_delay=0.05, max_delay=0.1),
                           deadline_s=deadline_s)


def elapsed(call) -> tuple[float, BaseException]:
    began = time.monotonic()
    with pytest.raises(api.MoeGoError) as info:
        call()
    return time.monotonic() - began, info.value


# -- size -------------------------------------------------------------------------------------------


def test_an_answer_that_never_ends_is_one_line_error_at_the_size_cap():
    sent = []

    def endless(request: HostileRequest, conn: socket.socket) -> None:
        send_head(conn, 200, {"Content-Type": "application/json"})  # no length: the body runs until close
        block = b'{"webhooks": [' + b" " * 65536
        conn.sendall(block)
        while not server.closing.is_set() and sum(sent) < 4 * api.MAX_ANSWER_BYTES:  # give up at 128 MiB
            try:
                conn.sendall(b" " * 65536)
            except OSError:
                return
            sent.append(65536)
        conn.close()

    with HostileServer(endless) as server, make(server.base_url, deadline_s=60) as client:
        _, error = elapsed(lambda: list(client.list_webhooks()))

    assert isinstance(error, api.MalformedResponse)
    assert str(error).startswith("MoeGo's answer to ListWebhooks is larger than 32 MiB")
    assert "\n" not in str(error)
    # The client stopped reading at the cap: the server could not push much more than that into the socket.
    assert sum(sent) < api.MAX_ANSWER_BYTES + 16 * 1024 * 1024


def test_a_declared_length_past_the_cap_is_refused_before_reading():
    def huge(request: HostileRequest, conn: socket.socket) -> None:
        send_head(conn, 200, {"Content-Type": "application/json", "Content-Length": str(10 * 2**30)})
        server.sleep(30)

    with HostileServer(huge) as server, make(server.base_url, deadline_s=20) as client:
        _, error = elapsed(lambda: list(client.list_webhooks()))

    assert isinstance(error, api.MalformedResponse) and "larger than 32 MiB" in str(error)


def test_json_nested_100000_levels_is_a_malformed_answer_not_a_recursion_error():
    deep = b"[" * 100_000 + b"]" * 100_000

    def nested(request: HostileRequest, conn: socket.socket) -> None:
        send_json(conn, b'{"webhooks": ' + deep + b"}")

    def nested_error(request: HostileRequest, conn: socket.socket) -> None:
        send_json(conn, b'{"code": 3, "message": ' + deep + b"}", 400)

    with HostileServer(nested) as server, make(server.base_url) as client:
        _, error = elapsed(lambda: list(client.list_webhooks()))
    assert isinstance(error, api.MalformedResponse) and "nested too deep" in str(error)

    with HostileServer(nested_error) as server, make(server.base_url) as client:
        _, error = elapsed(lambda: list(client.list_webhooks()))
    assert isinstance(error, api.InvalidArgument)
    assert len(str(error)) < 500


# -- deadline ---------------------------------------------------------------------------------------


def test_a_body_trickling_one_byte_at_a_time_ends_at_the_deadline():
    def trickle(request: HostileRequest, conn: socket.socket) -> None:
        send_head(conn, 200, {"Content-Type": "application/json", "Content-Length": "100000"})
        for _ in range(60):  # 12 s of one byte every 0.2 s: each read is quick, the whole never ends in time
            if not server.sleep(0.2):
                return
            try:
                conn.sendall(b" ")
            except OSError:
                return

    with HostileServer(trickle) as server, make(server.base_url, deadline_s=1.5, timeout_s=5) as client:
        took, error = elapsed(lambda: list(client.list_webhooks()))

    assert isinstance(error, api.DeadlineExceeded)
    assert "within the 1.5s deadline (--deadline, MOEGO_DEADLINE)" in str(error)
    assert took < 4.0


def test_headers_trickling_one_byte_at_a_time_end_at_the_deadline():
    def trickle(request: HostileRequest, conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
            if not server.sleep(0.2):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return

    with HostileServer(trickle) as server, make(server.base_url, deadline_s=1.5, timeout_s=5) as client:
        took, error = elapsed(lambda: client.get_webhook("whk_1"))

    assert isinstance(error, api.DeadlineExceeded)
    assert took < 4.0


def test_a_host_that_never_answers_fails_at_the_deadline_not_after_every_retry():
    with silent_listener() as url, make(url, deadline_s=1.5, timeout_s=30, attempts=5) as client:
        took, error = elapsed(lambda: list(client.list_webhooks()))

    assert isinstance(error, api.DeadlineExceeded)
    assert took < 4.0


def test_a_retry_wait_that_would_outlast_the_deadline_is_not_started():
    def busy(request: HostileRequest, conn: socket.socket) -> None:
        send_json(conn, {"code": 14, "message": "try later"}, 503, headers={"Retry-After": "30"})

    with HostileServer(busy) as server, make(server.base_url, deadline_s=3, attempts=5) as client:
        client.sleep = time.sleep
        took, error = elapsed(lambda: list(client.list_webhooks()))

    assert isinstance(error, api.Unavailable)
    assert len(server.requests) == 1
    assert took < 2.5


def test_the_pass_deadline_cuts_a_call_short_of_its_own_deadline():
    def silent(request: HostileRequest, conn: socket.socket) -> None:
        server.sleep(30)

    with HostileServer(silent) as server, make(server.base_url, deadline_s=60) as client:
        client.pass_deadline = time.monotonic() + 1.0
        took, error = elapsed(lambda: list(client.list_webhooks()))

    assert isinstance(error, api.PassBudgetExhausted)
    assert "time budget (--budget, MOEGO_PASS_BUDGET)" in str(error)
    assert took < 4.0


def test_endless_webhook_page_tokens_are_an_error():
    count = []

    def endless(request: HostileRequest, conn: socket.socket) -> None:
        count.append(1)
        send_json(conn, {"webhooks": [], "nextPageToken": f"t{len(count)}"})

    with HostileServer(endless) as server, make(server.base_url) as client:
        _, error = elapsed(lambda: list(client.list_webhooks()))

    assert isinstance(error, api.MalformedResponse)
    assert "would never end" in str(error)
    assert len(count) <= 10


# -- secrets ----------------------------------------------------------------------------------------


def test_an_error_echoing_the_key_and_its_base64_never_carries_them():
    def echo(request: HostileRequest, conn: socket.socket) -> None:
        send_json(conn, {"code": 3, "message": f"bad request: Authorization: {request.headers['authorization']} "
                                                f"(key {KEY}, token {B64.rstrip('=')})"}, 400)

    with HostileServer(echo) as server, make(server.base_url) as client:
        _, error = elapsed(lambda: list(client.list_webhooks()))

    text = str(error)
    assert isinstance(error, api.InvalidArgument)
    assert KEY not in text and B64 not in text and B64.rstrip("=") not in text
    assert "Authorization: Basic [redacted]" in text
    assert "key [redacted]" in text


# -- clock ------------------------------------------------------------------------------------------


def test_the_date_header_of_an_answer_is_kept_for_the_skew():
    ahead = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=10)

    def dated(request: HostileRequest, conn: socket.socket) -> None:
        send_json(conn, {"webhooks": []}, date=ahead)

    with HostileServer(dated) as server, make(server.base_url) as client:
        assert client.server_time is None
        list(client.list_webhooks())
        reading = client.server_time

    assert reading is not None and reading.date == ahead
    assert abs(reading.received - time.monotonic()) < 60
