"""Hostile MoeGo servers for the hardening tests: real HTTP/1.1 over loopback sockets, scripted per test.

:class:`HostileServer` accepts connections on a free loopback port, one thread per connection,
reads each request (head and ``Content-Length`` body) and hands it to the test's ``respond(request,
conn)``, which writes whatever bytes it likes: a normal JSON answer (:func:`send_json`), an endless
body, one byte every few seconds, nothing at all. :func:`silent_listener` is a port that accepts
TCP connections (the kernel's backlog does) but never reads or answers.

Everything a server does stops when the test's ``with`` block ends: blocked writers and sleepers
watch :attr:`HostileServer.closing`.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Callable, Iterator

from collectors.models import format_timestamp

__all__ = ["HostileRequest", "HostileServer", "send_json", "send_head", "silent_listener", "moego", "entry"]


@dataclass
class HostileRequest:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else {}


Respond = Callable[[HostileRequest, socket.socket], None]


@dataclass
class HostileServer:
    """A loopback HTTP server whose every answer is written by ``respond``."""

    respond: Respond
    closing: threading.Event = field(default_factory=threading.Event)
    requests: list[HostileRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> "HostileServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closing.set()
        self._acceptor.join(5)
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False when the server is closing (stop what you are doing)."""
        return not self.closing.wait(seconds)

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="hostile-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        try:
            while not self.closing.is_set():
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = conn.recv(65536)
                    except (TimeoutError, socket.timeout):
                        if self.closing.is_set():
                            return
                        continue
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    try:
                        chunk = conn.recv(65536)
                    except (TimeoutError, socket.timeout):
                        continue
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                request = HostileRequest(method, path, headers, body)
                self.requests.append(request)
                conn.settimeout(None)
                self.respond(request, conn)
                conn.settimeout(0.2)
        except OSError:
            return
        finally:
            conn.close()


def send_head(conn: socket.socket, status: int = 200, headers: dict[str, str] | None = None) -> None:
    """The status line and headers of an answer (no body)."""
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def send_json(conn: socket.socket, value: Any, status: int = 200, *, date: datetime | None = None,
              headers: dict[str, str] | None = None) -> None:
    """A whole JSON answer (``value`` may be bytes already), dated ``date`` (default: now)."""
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    send_head(conn, status, {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Date": format_datetime(date or datetime.now(timezone.utc), usegmt=True),
        **(headers or {}),
    })
    conn.sendall(body)


def entry(webhook_id: str, delivery_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    """A delivery entry as MoeGo lists it (proto3 JSON, defaults omitted)."""
    return {
        "id": delivery_id,
        "webhookId": webhook_id,
        "eventType": "APPOINTMENT_CREATED",
        "eventId": f"evt-{delivery_id}",
        "requestBody": base64.b64encode(b'{"id": 1}').decode(),
        "responseStatus": 200,
        "success": True,
        "deliveredAt": format_timestamp(at),
        "durationMs": "12",
        **extra,
    }


def moego(deliveries: Callable[[HostileRequest, socket.socket], None], *,
          webhooks: list[dict[str, Any]] | None = None, date: Callable[[], datetime] | None = None) -> Respond:
    """A MoeGo that lists ``webhooks`` (default one, ``whk_1``) normally and answers deliveries with ``deliveries``."""
    listed = webhooks if webhooks is not None else [{"id": "whk_1", "endpointUrl": "https://receiver.example/h",
                                                     "eventTypes": ["APPOINTMENT_CREATED"], "isActive": True}]

    def respond(request: HostileRequest, conn: socket.socket) -> None:
        when = date() if date else None
        if request.path.startswith("/v1/webhooks:list"):
            send_json(conn, {"webhooks": listed}, date=when)
        elif request.path.startswith("/v1/webhook/deliveries:list"):
            deliveries(request, conn)
        elif request.path.startswith("/v1/webhooks/"):
            send_json(conn, {"code": 5, "message": "not found"}, 404, date=when)
        else:
            send_json(conn, {"code": 5, "message": "not found"}, 404, date=when)

    return respond


@contextmanager
def silent_listener() -> Iterator[str]:
    """A base URL whose port completes TCP handshakes (kernel backlog) but never answers anything."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
