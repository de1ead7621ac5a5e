"""Shared fixtures: a real sandbox (``python -m sandbox``) in a subprocess, reached over loopback.

- ``sandbox`` (session scope): one sandbox for the whole run; tests that change it a lot use
- ``fresh_sandbox`` (function scope): a sandbox of their own.

Both yield a :class:`SandboxHandle`: ``base_url``, ``api_key``, ``process`` and helpers for the
sandbox-only ``/_sandbox/`` controls (``faults``, ``clear_faults``, ``advance_clock``,
``pause_traffic``, ``generate``, ``emit``, ``received``, ``stats``, ``health``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    import sqlite3

    from tests.seed import Seed

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 20.0


#: Where an event body carries its payload: the guide's field, then MoeGo's proto oneof fields.
PAYLOAD_FIELDS = ("payload", "healthCheck", "appointment", "onlineBooking", "customer", "pet")


def event_object(body: bytes) -> tuple[str, dict[str, Any]]:
    """The payload field of a webhook body and its object, decoded from base64 when it is a string.

    Independent of the product's decoder (collectors.bodies), so tests check one against the other.
    """
    event = json.loads(body)
    [field] = [key for key in event if key in PAYLOAD_FIELDS]
    value = event[field]
    if isinstance(value, str):
        value = json.loads(base64.b64decode(value, validate=True))
    assert isinstance(value, dict), value
    return field, value


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SandboxHandle:
    """A running sandbox: where it is, its key, its process, and its ``/_sandbox/`` controls."""

    base_url: str
    api_key: str
    process: subprocess.Popen[bytes]
    receiver_url: str = ""
    log_path: Path | None = field(default=None, repr=False)

    @property
    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Basic base64(api key)``."""
        return {"Authorization": "Basic " + base64.b64encode(self.api_key.encode()).decode()}

    def client(self, api_key: str | None = None, *, timeout: float = 15.0) -> httpx.Client:
        """An httpx client on the API with the key (or ``api_key``, or none if ``""``); close it."""
        key = self.api_key if api_key is None else api_key
        headers = {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False)

    def _admin(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Any:
        with httpx.Client(base_url=self.base_url, timeout=15.0, trust_env=False) as c:
            r = c.request(method, f"/_sandbox/{path}", json=json, params=params)
        r.raise_for_status()
        return r.json()

    def health(self) -> dict[str, Any]:
        """``GET /_sandbox/health``."""
        return self._admin("GET", "health")

    def faults(
        self,
        status: int | None = None,
        count: int = 1,
        *,
        retry_after: int | None = None,
        paths: str | None = None,
        malformed: int | None = None,
        kind: str | None = None,
    ) -> dict[str, Any]:
        """Make the next ``count`` API calls fail with ``status``.

        With ``malformed``, the next ``malformed`` list calls return broken bodies instead.
        """
        spec: dict[str, Any] = {}
        if malformed is not None:
            spec["malformed"] = malformed
            if kind:
                spec["kind"] = kind
        else:
            spec.update({"status": status, "count": count})
            if retry_after is not None:
                spec["retryAfter"] = retry_after
        if paths:
            spec["paths"] = paths
        return self._admin("POST", "faults", spec)

    def clear_faults(self) -> None:
        """Drop pending fault rules."""
        self._admin("DELETE", "faults")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the sandbox clock ahead."""
        return self._admin("POST", "clock", {"advanceSeconds": seconds})

    def pause_traffic(self, paused: bool = True) -> dict[str, Any]:
        """Pause (or resume) live traffic."""
        return self._admin("POST", "traffic", {"paused": paused})

    def generate(
        self,
        webhook_id: str,
        count: int,
        fail_rate: float = 0.0,
        *,
        spread_seconds: float = 3600.0,
        event_type: str | None = None,
    ) -> dict[str, Any]:
        """Synthesize ``count`` entries for a webhook over the last ``spread_seconds``."""
        body: dict[str, Any] = {
            "webhookId": webhook_id,
            "count": count,
            "failRate": fail_rate,
            "spreadSeconds": spread_seconds,
        }
        if event_type:
            body["eventType"] = event_type
        return self._admin("POST", "generate", body)

    def emit(self, webhook_id: str, event_type: str | None = None) -> dict[str, Any]:
        """Send one live event now (automatic retries follow); its entry after the first attempt."""
        body: dict[str, Any] = {"webhookId": webhook_id}
        if event_type:
            body["eventType"] = event_type
        return self._admin("POST", "emit", body)

    def received(self, delivery_id: str) -> list[dict[str, Any]]:
        """What the built-in receiver got for a delivery id."""
        return self._admin("GET", "received", params={"deliveryId": delivery_id})["requests"]

    def stats(self) -> dict[str, Any]:
        """``GET /_sandbox/stats``."""
        return self._admin("GET", "stats")


def start_sandbox(*extra: str, api_key: str = "test-sandbox-key") -> SandboxHandle:
    """Start ``python -m sandbox`` on a free port and wait until it is healthy."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="sandbox-", suffix=".log")[1])
    cmd = [
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        str(port),
        "--seed",
        "7",
        "--rate",
        "0",
        "--quiet",
        "--delivery-timeout",
        "2",
        "--api-key",
        api_key,
        *extra,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    with open(log, "wb") as err:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env=env)
    handle = SandboxHandle(
        base_url=f"http://127.0.0.1:{port}", api_key=api_key, process=process, log_path=log
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            health = handle.health()
            handle.receiver_url = health["receiverUrl"]
            return handle
        except httpx.HTTPError:
            time.sleep(0.05)
    stop_sandbox(handle)
    pytest.fail(f"sandbox did not become healthy in {STARTUP_TIMEOUT_S:.0f} s; stderr:\n{log.read_text()}")


def stop_sandbox(handle: SandboxHandle) -> tuple[int | None, str]:
    """SIGTERM, then kill after 10 s; returns the exit status and what the process wrote to stderr."""
    process = handle.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    stderr = ""
    if handle.log_path is not None and handle.log_path.exists():
        stderr = handle.log_path.read_text(errors="replace")
        handle.log_path.unlink()
    return process.returncode, stderr


@contextmanager
def running_sandbox(*extra: str, api_key: str = "test-sandbox-key") -> Iterator[SandboxHandle]:
    """:func:`start_sandbox` for the length of a ``with`` block, stopped after it."""
    handle = start_sandbox(*extra, api_key=api_key)
    try:
        yield handle
    finally:
        stop_sandbox(handle)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHandle]:
    """One sandbox (seed 7, no live traffic, 2 s delivery timeout) for the whole test session."""
    with running_sandbox() as handle:
        yield handle


@pytest.fixture
def fresh_sandbox() -> Iterator[SandboxHandle]:
    """A sandbox of the test's own, for tests that change a lot (clock, limits, webhook count)."""
    with running_sandbox() as handle:
        yield handle


@pytest.fixture
def seeded(tmp_path: Path) -> "Seed":
    """The seed archive (:mod:`tests.seed`) at its fixed ``NOW``."""
    from tests.seed import NOW, seed

    return seed(tmp_path / "archive.db", NOW)


@pytest.fixture
def conn(seeded: "Seed") -> Iterator["sqlite3.Connection"]:
    """A read-only connection to the fixed seed archive."""
    from collectors import archive

    handle = archive.connect(seeded.path, readonly=True)
    yield handle
    handle.close()
