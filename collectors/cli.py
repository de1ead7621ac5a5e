"""The ``moego-monitor`` command: a thin click layer over the library.

Each command's one-line docstring is its ``--help``. Library errors become one line on stderr
(``click.ClickException``), never a traceback. Settings come from :func:`collectors.config.load_settings`
(flags, then ``MOEGO_*`` environment, then defaults), built once per command by :func:`settings_options`.
"""

from __future__ import annotations

import click

from . import __version__
from .cli_support import CONTEXT_SETTINGS
from dashboard.commands import export_command  # reads the archive: the dashboard side owns it

from .alerts.commands import alerts_group
from .commands import collect_command, schedule_command, status_command
from .config import ConfigError, load_settings

@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="moego-monitor")
def cli() -> None:
    """Archive, chart and redeliver MoeGo webhook deliveries before MoeGo's 15-day retention deletes them."""


@cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8600, show_default=True, type=int, help="Port of the API.")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the generated history.")
@click.option("--history-days", default=20, show_default=True, type=int, help="Days of history to generate.")
@click.option("--rate", default=30.0, show_default=True, type=float, help="Live events a minute (0 = none).")
@click.option("--volume", type=click.Choice(["demo", "full"]), default="demo", show_default=True,
              help="demo: a few webhooks; full: MoeGo's quota, 1.5 million entries.")
@click.option("--api-key", help="Key the sandbox accepts [env MOEGO_API_KEY; default moego-sandbox-demo-key].")
@click.option("--delivery-timeout", default=30.0, show_default=True, type=float, help="Seconds a receiver may take.")
@click.option("--quiet", is_flag=True, help="Do not log each request.")
def sandbox_command(host: str, port: int, seed: int, history_days: int, rate: float, volume: str,
                    api_key: str | None, delivery_timeout: float, quiet: bool) -> None:
    """Run a local double of MoeGo's Webhook API that sends real signed webhooks."""
    from sandbox.server import SandboxError, SandboxOptions, serve  # the product never imports the sandbox otherwise

    try:
        key = api_key or load_settings().api_key or SandboxOptions.api_key
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        serve(SandboxOptions(host=host, port=port, seed=seed, history_days=history_days, rate=rate, volume=volume,
                             api_key=key, delivery_timeout_s=delivery_timeout, quiet=quiet))
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("demo")
@click.option("--sandbox-port", default=8600, show_default=True, type=int, help="Port of the sandbox API.")
@click.option("--dashboard-port", default=8501, show_default=True, type=int, help="Port of the dashboard.")
@click.option("--db", "db_path", default="data/demo.db", show_default=True, type=click.Path(dir_okay=False),
              help="The demo's own archive.")
@click.option("--every", default="1m", show_default=True, help="How often the collector runs.")
@click.option("--rate", default=30.0, show_default=True, type=float, help="Live events a minute in the sandbox.")
def demo_command(sandbox_port: int, dashboard_port: int, db_path: str, every: str, rate: float) -> None:
    """Start the sandbox, the scheduled collector and the dashboard together; Ctrl-C stops all three."""
    from pathlib import Path

    from sandbox.demo import DemoError, DemoOptions, run_demo

    try:
        run_demo(DemoOptions(sandbox_port=sandbox_port, dashboard_port=dashboard_port, db_path=Path(db_path),
                             every=every, rate=rate), echo=click.echo)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None


cli.add_command(collect_command)
cli.add_command(schedule_command)
cli.add_command(status_command)
cli.add_command(export_command)
cli.add_command(alerts_group)
