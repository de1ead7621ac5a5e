"""Run the sandbox: options, startup banner, two HTTP servers, clean shutdown.

``serve(SandboxOptions(...))`` blocks: it binds the API port (``host:port``) and the built-in
receiver (loopback, ``receiver_port``; 0 picks a free one), seeds the history, prints a banner
(API base URL, API key, one line per webhook) unless ``quiet``, and serves until SIGINT or SIGTERM,
then stops live traffic, closes connections and returns normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from sandbox.api import build_api_app
from sandbox.limits import PER_DAY
from sandbox.receiver import build_receiver_app
from sandbox.runtime import Runtime, RuntimeConfig
from sandbox.shapes import BODY_SHAPES, DEFAULT_BODY_SHAPE

__all__ = ["SandboxOptions", "SandboxError", "serve"]

VOLUMES = ("demo", "full")


#: The most ``--latency`` a sandbox adds to an answer (ms): a slow intercontinental round trip, with margin.
MAX_LATENCY_MS = 10_000.0


@dataclass
class SandboxOptions:
    """Everything ``serve`` needs; the defaults make the demo."""

    host: str = "127.0.0.1"
    port: int = 8600
    seed: int = 7
    history_days: int = 20
    rate: float = 30.0  # events per minute, across all active webhooks
    volume: str = "demo"  # "demo" | "full"
    api_key: str = "moego-sandbox-demo-key"
    delivery_timeout_s: float = 30.0
    receiver_port: int = 0  # 0 = pick a free port
    quiet: bool = False
    daily_limit: int = PER_DAY  # pushes a day per webhook; lower it only in tests
    body_shape: str = DEFAULT_BODY_SHAPE  # guide | oneof | oneof-base64 | mixed (sandbox.shapes)
    latency_ms: float = 0.0  # added before every API answer: the round trip to MoeGo over the internet

    def validate(self) -> None:
        """Raise SandboxError (one clear line) for impossible options."""
        if self.volume not in VOLUMES:
            raise SandboxError(f"volume must be one of {', '.join(VOLUMES)}, not {self.volume!r}")
        if not 0 <= self.port <= 65535 or not 0 <= self.receiver_port <= 65535:
            raise SandboxError("ports must be between 0 and 65535")
        if self.history_days < 0:
            raise SandboxError("history_days must be >= 0")
        if self.rate < 0:
            raise SandboxError("rate must be >= 0 events per minute")
        if self.delivery_timeout_s <= 0:
            raise SandboxError("delivery_timeout_s must be > 0")
        if not 1 <= self.daily_limit <= PER_DAY:
            raise SandboxError(f"daily_limit must be between 1 and {PER_DAY} (MoeGo's limit)")
        if self.body_shape not in BODY_SHAPES:
            raise SandboxError(f"body_shape must be one of {', '.join(BODY_SHAPES)}, not {self.body_shape!r}")
        if not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise SandboxError(f"latency must be between 0 and {MAX_LATENCY_MS:,.0f} ms, not {self.latency_ms:g}")
        if not self.api_key or any(c.isspace() for c in self.api_key):
            raise SandboxError("api_key must be a non-empty string without spaces")


class SandboxError(Exception):
    """The sandbox cannot start (bad option, port in use)."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it, Nagle's
    # algorithm meets delayed ACKs and every response waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise SandboxError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _banner(rt: Runtime, started_s: float) -> None:
    print(f"MoeGo sandbox API: {rt.config.api_base_url}  (ready in {started_s:.1f} s)", flush=True)
    print(f"API key: {rt.api_key}  (read-only key: {rt.readonly_key})", flush=True)
    for w in rt.registry.all():
        state = "active" if w.is_active else "inactive"
        signed = "signed" if w.secret_token else "unsigned"
        print(
            f"webhook {w.id}  {w.label:<18} {w.profile:<8} {state:<8} {signed:<8} {w.body_shape:<12} {w.endpoint_url}",
            flush=True,
        )


async def _run(
    rt: Runtime, options: SandboxOptions, api_sock: socket.socket, recv_sock: socket.socket, t0: float
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log_level = "error" if options.quiet else "warning"
    closing = asyncio.Event()

    def config(app: Any, *, date_header: bool = True) -> uvicorn.Config:
        return uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=1,
            date_header=date_header,
        )

    receiver = _Server(
        config(
            build_receiver_app(
                registry=rt.registry,
                delivery_timeout_s=options.delivery_timeout_s,
                seed=options.seed,
                log=rt.received,
                closing=closing,
            )
        )
    )
    api = _Server(config(build_api_app(rt), date_header=False))  # the API dates its answers by the sandbox clock
    servers = [
        asyncio.ensure_future(receiver.serve(sockets=[recv_sock])),
        asyncio.ensure_future(api.serve(sockets=[api_sock])),
    ]
    try:
        while not (receiver.started and api.started):
            if any(task.done() for task in servers):
                raise SandboxError("the sandbox's HTTP servers failed to start")
            await asyncio.sleep(0.01)
        await rt.start()
        if not options.quiet:
            _banner(rt, time.perf_counter() - t0)
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopper, *servers], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        closing.set()
        await rt.stop()
        receiver.should_exit = api.should_exit = True
        await asyncio.gather(*servers, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


#: Python's cyclic garbage collector while serving: a page of 500 entries builds tens of thousands of short-lived
#: dicts and lists (freed by reference counting), which at the default threshold (700) started a collection every
#: few entries (2-day backfills: ~5% of the sandbox's CPU; bench/README.md, issue-9n).
SERVING_GC_THRESHOLD = (50_000, 20, 20)


def _few_collections() -> None:
    """Leave what seeding built out of garbage collection (``gc.freeze``) and collect less often. Cycles are still
    collected."""
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLD)


def serve(options: SandboxOptions) -> None:
    """Run the sandbox until SIGINT/SIGTERM (see the module docstring); SandboxError if it cannot start."""
    t0 = time.perf_counter()
    options.validate()
    previous_term = signal.signal(signal.SIGTERM, _interrupt)  # a clean stop while seeding, too
    sockets: list[socket.socket] = []
    rt: Runtime | None = None
    try:
        api_sock = _bind(options.host, options.port)
        sockets.append(api_sock)
        recv_sock = _bind("127.0.0.1", options.receiver_port)
        sockets.append(recv_sock)
        relay_sock = _bind("127.0.0.1", 0)
        sockets.append(relay_sock)
        api_port = api_sock.getsockname()[1]
        recv_port = recv_sock.getsockname()[1]
        config = RuntimeConfig(
            seed=options.seed,
            history_days=options.history_days,
            rate=options.rate,
            volume=options.volume,
            api_key=options.api_key,
            delivery_timeout_s=options.delivery_timeout_s,
            api_base_url=_url(
                options.host if options.host not in ("0.0.0.0", "::") else "127.0.0.1", api_port
            ),
            receiver_base_url=_url("127.0.0.1", recv_port),
            daily_limit=options.daily_limit,
            body_shape=options.body_shape,
            latency_ms=options.latency_ms,
        )
        rt = Runtime(config, relay_sock, recv_port)
        rt.seed()
        _few_collections()
        asyncio.run(_run(rt, options, api_sock, recv_sock, t0))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        for sock in sockets:
            sock.close()
        if rt is not None:
            rt.close()
    sys.stdout.flush()
