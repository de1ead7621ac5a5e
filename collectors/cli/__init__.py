"""The ``moego-monitor`` command: a thin click layer on top of the library, importing down only.

Each command's one-line docstring is its ``--help``. Library errors become one line on stderr
(``click.ClickException``, see :mod:`collectors.cli.support`), never a traceback. Settings come from
:func:`collectors.config.load_settings` (flags, then ``MOEGO_*`` environment, then defaults), built once
per command. Nothing in the library imports this package. ``sandbox`` and ``demo`` hand off lazily to
the :mod:`sandbox` package, which the product never imports otherwise.
"""

from __future__ import annotations

import click

from .. import __version__
from ..archive import DEMO_DB_PATH
from ..config import ConfigError, load_settings
from .alerts import alerts_group
from .collector import collect_command, schedule_command, status_command
from .export import export_command
from .support import CONTEXT_SETTINGS

__all__ = ["cli"]


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="moego-monitor")
def cli() -> None:
    """Archive, chart and redeliver MoeGo webhook deliveries before MoeGo's 15-day retention deletes them."""


@cli.command("sandbox", add_help_option=False,
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sandbox_command(args: tuple[str, ...]) -> None:
    """Run a local double of MoeGo's Webhook API that sends real signed webhooks (-h lists its flags)."""
    from sandbox.__main__ import parse_args  # the product never imports the sandbox otherwise
    from sandbox.server import SandboxError, serve

    try:
        key = load_settings().api_key  # MOEGO_API_KEY, when set, is the key the sandbox accepts
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    options = parse_args(list(args), prog="moego-monitor sandbox", api_key=key or None)
    try:
        serve(options)
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("dashboard", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dashboard_command(args: tuple[str, ...]) -> None:
    """Serve the dashboard: `streamlit run dashboard/app.py`, warmed up, on loopback unless you set --server.address.

    Every other argument goes to Streamlit as it is (`streamlit run --help` lists its flags), e.g.
    `moego-monitor dashboard --server.port 8502`."""
    import os
    import sys

    # The dashboard sits beside the CLI, not below it: hand this process over to `python -m dashboard`.
    os.execv(sys.executable, [sys.executable, "-m", "dashboard", *args])


@cli.command("demo")
@click.option("--sandbox-port", default=8600, show_default=True, type=int, help="Port of the sandbox API.")
@click.option("--dashboard-port", default=8501, show_default=True, type=int, help="Port of the dashboard.")
@click.option("--db", "db_path", default=str(DEMO_DB_PATH), show_default=True, type=click.Path(dir_okay=False),
              help="The demo's own archive.")
@click.option("--every", default="1m", show_default=True, help="How often the collector runs.")
@click.option("--rate", default=30.0, show_default=True, type=float, help="Live events a minute in the sandbox.")
@click.option("--body-shape", type=click.Choice(["guide", "oneof", "oneof-base64", "mixed"]), default="mixed",
              show_default=True, help="Webhook bodies: the guide's payload, MoeGo's oneof field, it in base64, or mixed.")
def demo_command(sandbox_port: int, dashboard_port: int, db_path: str, every: str, rate: float, body_shape: str) -> None:
    """Start the sandbox, the scheduled collector and the dashboard together; Ctrl-C stops all three."""
    from pathlib import Path

    from sandbox.demo import DemoError, DemoOptions, run_demo

    try:
        run_demo(DemoOptions(sandbox_port=sandbox_port, dashboard_port=dashboard_port, db_path=Path(db_path),
                             every=every, rate=rate, body_shape=body_shape), echo=click.echo)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None


cli.add_command(collect_command)
cli.add_command(schedule_command)
cli.add_command(status_command)
cli.add_command(export_command)
cli.add_command(alerts_group)
