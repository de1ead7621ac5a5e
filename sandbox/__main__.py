"""``python -m sandbox``: run the MoeGo Webhook API sandbox (flags mirror :class:`SandboxOptions`)."""

from __future__ import annotations

import argparse
import sys

from sandbox.server import SandboxError, SandboxOptions, serve
from sandbox.shapes import BODY_SHAPES


def parse_args(argv: list[str] | None = None, *, prog: str = "python -m sandbox",
               api_key: str | None = None) -> SandboxOptions:
    """Command-line flags as SandboxOptions. ``api_key`` replaces the default key (``--api-key`` still wins).

    The one definition of the sandbox's flags: ``moego-monitor sandbox`` hands its arguments here.
    """
    d = SandboxOptions() if api_key is None else SandboxOptions(api_key=api_key)
    p = argparse.ArgumentParser(prog=prog, description="Run a local double of MoeGo's Webhook API that sends real signed webhooks.")
    p.add_argument("--host", default=d.host, help=f"API listen address (default {d.host})")
    p.add_argument("--port", type=int, default=d.port, help=f"API port, 0 = any free port (default {d.port})")
    p.add_argument(
        "--seed", type=int, default=d.seed, help=f"seed of the generated history (default {d.seed})"
    )
    p.add_argument(
        "--history-days",
        type=int,
        default=d.history_days,
        help=f"days of history (default {d.history_days}; 15 are kept)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        help=f"live events per minute across all webhooks, 0 = none (default {d.rate:g})",
    )
    p.add_argument(
        "--volume",
        choices=("demo", "full"),
        default=d.volume,
        help="demo: 5 webhooks, a few hundred deliveries a day each; full: 10 x 10,000 a day",
    )
    p.add_argument(
        "--api-key",
        default=d.api_key,
        help=f"the accepted API key (default {d.api_key}); '<key>-readonly' is read-only",
    )
    p.add_argument(
        "--delivery-timeout",
        type=float,
        default=d.delivery_timeout_s,
        help=f"seconds before a delivery times out (default {d.delivery_timeout_s:g})",
    )
    p.add_argument(
        "--receiver-port",
        type=int,
        default=d.receiver_port,
        help="built-in receiver port, 0 = any free port (default)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing at start")
    p.add_argument(
        "--daily-limit",
        type=int,
        default=d.daily_limit,
        help=f"for tests: pushes a day per webhook, 1..{d.daily_limit} (default {d.daily_limit:,}, MoeGo's);"
        " seeded history is capped by it too",
    )
    p.add_argument(
        "--body-shape",
        choices=BODY_SHAPES,
        default=d.body_shape,
        help=f"shape of webhook bodies: the guide's payload, MoeGo's proto oneof field, that field in base64,"
        f" or mixed by webhook (default {d.body_shape}; see sandbox/README.md)",
    )
    p.add_argument(
        "--latency",
        type=float,
        default=d.latency_ms,
        metavar="MS",
        help="milliseconds added before every API answer, as the round trip to MoeGo over the internet would"
        f" (default {d.latency_ms:g}; for measuring a collector's concurrency)",
    )
    a = p.parse_args(argv)
    return SandboxOptions(
        host=a.host,
        port=a.port,
        seed=a.seed,
        history_days=a.history_days,
        rate=a.rate,
        volume=a.volume,
        api_key=a.api_key,
        delivery_timeout_s=a.delivery_timeout,
        receiver_port=a.receiver_port,
        quiet=a.quiet,
        daily_limit=a.daily_limit,
        body_shape=a.body_shape,
        latency_ms=a.latency,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        serve(parse_args(argv))
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
