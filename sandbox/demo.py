"""``moego-monitor demo``: the whole product on one machine, against the sandbox, in one command.

Starts three processes and supervises them:

1. the sandbox (a local MoeGo Webhook API that sends real signed webhooks),
2. the scheduled collector (``moego-monitor schedule --every 1m``) writing the demo archive,
3. the Streamlit dashboard on http://localhost:8501.

Alerts: the demo writes an alerts configuration beside its archive whose one channel is a tiny
built-in sink (a generic JSON webhook, ``json://127.0.0.1:PORT/notify``) run by this supervisor:
each notification the collector sends is printed here, so the failing webhook's incident shows up
on the console within the first pass, as well as on the dashboard's Incidents page.

Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too and the demo
exits non-zero, saying which one and why in one line. The demo writes its own archive
(``data/demo.db`` by default) so it never mixes sandbox data into a real archive.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import httpx

__all__ = ["DemoOptions", "DemoError", "run_demo", "demo_environment", "NotificationSink", "demo_alerts_config"]

SANDBOX_API_KEY = "moego-sandbox-demo-key"


class DemoError(Exception):
    """The demo could not start or one of its processes stopped."""


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo listens and what it writes."""

    sandbox_port: int = 8600
    dashboard_port: int = 8501
    db_path: Path = Path("data") / "demo.db"
    every: str = "1m"
    rate: float = 30.0
    seed: int = 7
    delivery_timeout_s: float = 10.0
    open_browser: bool = False
    body_shape: str = "mixed"  # the sandbox's --body-shape (sandbox.shapes)
    extra_env: dict[str, str] = field(default_factory=dict)


class NotificationSink:
    """A loopback HTTP endpoint that takes Apprise's JSON notifications and hands each title to ``echo``."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.received: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
                try:
                    message = json.loads(self.rfile.read(length))
                    title = " ".join(str(message.get("title", "")).split())[:200]
                except (ValueError, AttributeError):
                    message, title = {}, "(unreadable notification)"
                sink.received.append(message)
                echo(f"  [alerts] {title}")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self.server.serve_forever, name="demo-sink", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def demo_alerts_config(dashboard_port: int) -> str:
    """The demo's alerts configuration: every built-in rule, notifying the sink named by ``MOEGO_DEMO_SINK_URL``."""
    return f"""# Written by 'moego-monitor demo': every built-in rule notifies the demo's console sink.
[alerts]
remind_every = "30m"
dashboard_url = "http://localhost:{dashboard_port}"

[[alerts.channels]]
name = "demo-console"
url = "env:MOEGO_DEMO_SINK_URL"
"""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def demo_environment(options: DemoOptions) -> dict[str, str]:
    """The environment the collector and dashboard get: pointed at the sandbox and the demo archive."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    env.update(
        MOEGO_API_KEY=SANDBOX_API_KEY,
        MOEGO_BASE_URL=f"http://127.0.0.1:{options.sandbox_port}",
        MOEGO_MONITOR_DB=str(Path(options.db_path).resolve()),
        PYTHONUNBUFFERED="1",
    )
    env.update(options.extra_env)
    return env


def _commands(options: DemoOptions) -> list[tuple[str, list[str]]]:
    py = sys.executable
    return [
        ("sandbox", [py, "-m", "sandbox", "--port", str(options.sandbox_port), "--seed", str(options.seed),
                     "--rate", str(options.rate), "--api-key", SANDBOX_API_KEY,
                     "--delivery-timeout", str(options.delivery_timeout_s), "--body-shape", options.body_shape,
                     "--quiet"]),
        ("collector", [py, "-m", "collectors", "schedule", "--every", options.every]),
        ("dashboard", [py, "-m", "dashboard", "--server.port", str(options.dashboard_port),
                       "--server.headless", "false" if options.open_browser else "true",
                       "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1",
                       "--client.toolbarMode", "minimal"]),
    ]


def _wait_for(url: str, proc: subprocess.Popen, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the {name} exited with status {proc.returncode} while starting: see its output above")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the {name} did not come up at {url} within {timeout_s:.0f}s")


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each child (dashboard first, sandbox last), then SIGKILL what is left after 10 s."""
    for proc in reversed(list(procs.values())):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs.values():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            proc.wait(remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(options: DemoOptions, *, echo=print) -> int:
    """Run the demo until Ctrl-C or SIGTERM (returns 0) or until a process dies (raises DemoError)."""
    for name, port in (("sandbox", options.sandbox_port), ("dashboard", options.dashboard_port)):
        if not _port_free(port):
            raise DemoError(f"port {port} for the {name} is in use: stop what runs there or pass another --{name}-port")
    Path(options.db_path).parent.mkdir(parents=True, exist_ok=True)
    sink = NotificationSink(echo)
    config_path = Path(options.db_path).with_name(Path(options.db_path).stem + "-alerts.toml")
    config_path.write_text(demo_alerts_config(options.dashboard_port), encoding="utf-8")
    env = demo_environment(options)
    env.update(MOEGO_MONITOR_CONFIG=str(config_path.resolve()), MOEGO_DEMO_SINK_URL=sink.url)
    sink.start()
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        commands = dict(_commands(options))
        # Children start in their own process group, so a Ctrl-C reaches only the supervisor,
        # which then stops them in order.
        procs["sandbox"] = subprocess.Popen(commands["sandbox"], env=env, start_new_session=True)
        _wait_for(f"http://127.0.0.1:{options.sandbox_port}/_sandbox/health", procs["sandbox"], "sandbox", 90)
        procs["collector"] = subprocess.Popen(commands["collector"], env=env, start_new_session=True)
        procs["dashboard"] = subprocess.Popen(commands["dashboard"], env=env, start_new_session=True)
        _wait_for(f"http://127.0.0.1:{options.dashboard_port}/_stcore/health", procs["dashboard"], "dashboard", 60)
        echo("")
        echo(f"  MoeGo Webhook Monitor demo is up: open http://localhost:{options.dashboard_port}")
        echo(f"  sandbox API http://127.0.0.1:{options.sandbox_port}  key {SANDBOX_API_KEY}")
        echo(f"  archive {options.db_path}, collected every {options.every}.  Ctrl-C stops all three.")
        echo(f"  alerts  {config_path}: notifications are printed here as [alerts] lines")
        echo("")
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise DemoError(f"the {name} stopped (exit status {proc.returncode}): the demo is shutting down")
            time.sleep(0.5)
        echo("stopping the demo…")
        return 0
    finally:
        _stop(procs)
        sink.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
