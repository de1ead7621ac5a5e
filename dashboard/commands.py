"""Dashboard-side CLI commands, registered on ``moego-monitor`` by ``collectors.cli``.

``moego-monitor export --since 2026-11-01 --until 2026-11-07 --status failed --out failed.csv``
writes the CSV and ``failed.csv.manifest.json``; ``--out -`` streams the CSV to stdout (no manifest).
"""

from __future__ import annotations

import re
import sqlite3
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import click

from collectors import archive
from collectors.archive import ArchiveError
from collectors.config import ConfigError, load_settings
from collectors.models import MalformedMessage, parse_timestamp

from .export import COLUMN_HELP, STATUS_CHOICES, export_csv, filters_for_status, write_export

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


def _columns_epilog() -> str:
    """The CSV's columns and what each holds, for ``export -h`` (``\\b`` keeps click from rewrapping them)."""
    width = max(len(name) for name, _ in COLUMN_HELP) + 2
    lines = [f"  {name:<{width}}{meaning}" for name, meaning in COLUMN_HELP]
    return ("\b\nCSV columns, in this order (UTF-8, one header row):\n" + "\n".join(lines)
            + "\n\nA cell that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a carriage "
              "return) is prefixed with '.")


@click.command("export", epilog=_columns_epilog(), context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--since", required=True, help="Start: a UTC date (2026-11-01) or an RFC 3339 time, inclusive.")
@click.option("--until", required=True, help="End: a UTC date (that whole day included) or an RFC 3339 time, exclusive.")
@click.option("--webhook", "webhook_ids", multiple=True, metavar="ID", help="Only this webhook (repeatable).")
@click.option("--status", type=click.Choice(STATUS_CHOICES), help="Only this outcome or response status class.")
@click.option("--out", "out", default=None, metavar="FILE",
              help="CSV file to write, with FILE.manifest.json beside it; '-' for stdout (no manifest). "
                   "Default: deliveries-SINCE-UNTIL.csv.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Archive file [env MOEGO_MONITOR_DB; default data/moego-monitor.db].")
def export_command(since: str, until: str, webhook_ids: tuple[str, ...], status: str | None, out: str | None,
                   db_path: str | None) -> None:
    """Export archived deliveries to CSV, with a SHA-256 manifest an auditor can check."""
    start, end = parse_bound(since, end=False), parse_bound(until, end=True)
    if end <= start:
        raise click.ClickException(f"--until ({until}) must be after --since ({since})")
    try:
        settings = load_settings(db_path=db_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        archive.check_readable(settings.db_path)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    target = Path(out) if out and out != "-" else Path(f"deliveries-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}.csv")
    try:
        if out == "-":
            db = archive.connect(settings.db_path, readonly=True)
            try:
                filters = filters_for_status(start, end, webhook_ids, status)
                stream = sys.stdout
                manifest = export_csv(db, filters, stream, secret_headers=settings.secret_headers)
                stream.flush()
            finally:
                db.conn.close()
            click.echo(f"exported {manifest.rows:,} deliveries (sha256 {manifest.sha256})", err=True)
            return
        manifest = write_export(settings.db_path, start, end, webhook_ids, status, target,
                                secret_headers=settings.secret_headers)
    except BrokenPipeError:  # pragma: no cover - stdout closed early, e.g. by `| head`
        sys.stderr.close()
        return
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(
            f"cannot read the archive at {settings.db_path}: {exc}: check that --db or MOEGO_MONITOR_DB names an "
            "intact moego-monitor archive"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if out == "-":
            raise click.ClickException(f"cannot write to stdout: {reason}") from None
        raise click.ClickException(
            f"cannot write {target}: {reason}: check that its folder exists and is writable, or choose another --out"
        ) from None
    click.echo(f"exported {manifest.rows:,} deliveries to {target} (sha256 {manifest.sha256}); manifest {target}.manifest.json")
