"""The ``export`` command: archived deliveries to CSV (registered on ``moego-monitor`` by :mod:`collectors.cli`).

``moego-monitor export --since 2026-11-01 --until 2026-11-07 --status failed --out failed.csv``
writes the CSV and ``failed.csv.manifest.json``; ``--out -`` streams the CSV to stdout (no manifest).
"""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import click

from .. import archive
from ..archive.export_parallel import ExportWorkerError, default_workers
from ..archive.export import (COLUMN_HELP, STATUS_CHOICES, export_csv, filters_for_status, known_webhooks,
                              unknown_webhooks, write_export)
from ..config import Settings
from ..models import MalformedMessage, parse_timestamp
from .support import CONTEXT_SETTINGS, one_line_errors, settings_options

__all__ = ["export_command", "parse_bound"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_bound(text: str, *, end: bool) -> datetime:
    """A ``--since``/``--until`` value as an aware UTC datetime.

    ``2026-11-01`` is a UTC calendar day: its start for ``--since`` and, for ``--until`` (``end``),
    the start of the next day, so ``--since 2026-11-01 --until 2026-11-30`` holds all of November
    1..30. An RFC 3339 time (``2026-11-01T08:00:00Z``, ``2026-11-01T10:00:00+02:00``) is taken
    exactly, ``--until`` exclusive. ``--until 9999-12-31`` (no next day to end at) means "to the
    end of time". Raises ``click.BadParameter`` for anything else.
    """
    text = text.strip()
    if _DATE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(f"not a date: {text!r}") from None
        start = datetime.combine(day, time(0), tzinfo=timezone.utc)
        if not end:
            return start
        return start + timedelta(days=1) if day < date.max else datetime.max.replace(tzinfo=timezone.utc)
    try:
        return parse_timestamp(text)
    except MalformedMessage:
        raise click.BadParameter(
            f"{text!r} is neither a date (2026-11-01) nor an RFC 3339 time (2026-11-01T08:00:00Z)"
        ) from None
    except OverflowError:
        raise click.BadParameter(f"{text!r} is out of range: in UTC it falls outside the years 1..9999") from None


def _bound(text: str, option: str, *, end: bool) -> datetime:
    """:func:`parse_bound`, its error naming the option (``Invalid value for '--since': ...``)."""
    try:
        return parse_bound(text, end=end)
    except click.BadParameter as exc:
        exc.param_hint = f"'{option}'"
        raise


def _columns_epilog() -> str:
    """The CSV's columns and what each holds, for ``export -h`` (``\\b`` keeps click from rewrapping them)."""
    width = max(len(name) for name, _ in COLUMN_HELP) + 2
    lines = [f"  {name:<{width}}{meaning}" for name, meaning in COLUMN_HELP]
    return ("\b\nCSV columns, in this order (UTF-8, one header row):\n" + "\n".join(lines)
            + "\n\nA cell that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a carriage "
              "return) is prefixed with '.")


@click.command("export", epilog=_columns_epilog(), context_settings=CONTEXT_SETTINGS)
@click.option("--since", required=True, help="Start: a UTC date (2026-11-01) or an RFC 3339 time, inclusive.")
@click.option("--until", required=True, help="End: a UTC date (that whole day included) or an RFC 3339 time, exclusive.")
@click.option("--webhook", "webhook_ids", multiple=True, metavar="ID", help="Only this webhook (repeatable).")
@click.option("--status", type=click.Choice(STATUS_CHOICES), help="Only this outcome or response status class.")
@click.option("--out", "out", default=None, metavar="FILE",
              help="CSV file to write, with FILE.manifest.json beside it; '-' for stdout (no manifest). "
                   "Default: deliveries-SINCE-UNTIL.csv.")
@settings_options(moego=False)
@one_line_errors(archive_access="read")
def export_command(settings: Settings, since: str, until: str, webhook_ids: tuple[str, ...], status: str | None,
                   out: str | None) -> None:
    """Export archived deliveries to CSV, with a SHA-256 manifest an auditor can check."""
    start, end = _bound(since, "--since", end=False), _bound(until, "--until", end=True)
    if end <= start:
        raise click.ClickException(f"--until ({until}) must be after --since ({since})")
    archive.check_readable(settings.db_path)
    if webhook_ids:
        with archive.open_archive(settings.db_path, readonly=True) as conn:
            unknown, known = unknown_webhooks(conn, webhook_ids), known_webhooks(conn)
        if unknown:
            listed = ", ".join(known) if known else "none yet"
            raise click.ClickException(
                f"no webhook {', '.join(unknown)} in the archive at {settings.db_path} (known: {listed}): check --webhook"
            )
    target = Path(out) if out and out != "-" else Path(f"deliveries-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}.csv")
    try:
        if out == "-":
            with archive.open_archive(settings.db_path, readonly=True) as conn:
                filters = filters_for_status(start, end, webhook_ids, status)
                stream = sys.stdout
                manifest = export_csv(conn, filters, stream, secret_headers=settings.secret_headers,
                                      workers=default_workers())
                stream.flush()
            click.echo(f"exported {manifest.rows:,} deliveries (sha256 {manifest.sha256})", err=True)
            return
        manifest = write_export(settings.db_path, start, end, webhook_ids, status, target,
                                secret_headers=settings.secret_headers, workers=default_workers())
    except BrokenPipeError:  # pragma: no cover - stdout closed early, e.g. by `| head`
        sys.stderr.close()
        return
    except ExportWorkerError as exc:  # a worker process was killed (out of memory, by hand): nothing was kept
        raise click.ClickException(f"{exc}; nothing was written to {target if out != '-' else 'a file'}: "
                                   "run the export again") from None
    except OSError as exc:  # writing the CSV; the archive's own failures are sqlite3 errors
        reason = exc.strerror or str(exc)
        if out == "-":
            raise click.ClickException(f"cannot write to stdout: {reason}") from None
        raise click.ClickException(
            f"cannot write {target}: {reason}: check that its folder exists and is writable, or choose another --out"
        ) from None
    click.echo(f"exported {manifest.rows:,} deliveries to {target} (sha256 {manifest.sha256}); manifest {target}.manifest.json")
    if not manifest.rows:
        click.echo("nothing matched: no archived delivery in that range with those filters (check --since, --until, "
                   "--status; 'moego-monitor status' shows what is archived)", err=True)
