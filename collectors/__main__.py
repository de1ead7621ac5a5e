"""``python -m collectors`` runs the ``moego-monitor`` command."""

from .cli import cli

cli(prog_name="moego-monitor")
