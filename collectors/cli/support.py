"""What every ``moego-monitor`` command shares: click settings, the settings flags, and the one road from
a library error to a CLI line.

Every command is decorated with :func:`settings_options` (validated settings, built once) and
:func:`one_line_errors`; no command catches library errors itself. An error becomes
``click.ClickException``: one line on stderr, exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any, Callable

import click

from ..archive import ArchiveError
from ..archive.runs import CollectorBusy
from ..client import MoeGoError
from ..config import ConfigError, Settings, load_settings

__all__ = ["CONTEXT_SETTINGS", "USER_ERRORS", "settings_options", "one_line_errors"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Errors whose message already is the one line a user reads (what happened, what to do).
USER_ERRORS = (ConfigError, MoeGoError, ArchiveError, CollectorBusy)


def settings_options(func: Callable[..., Any] | None = None, *, moego: bool = True) -> Any:
    """Add the shared flags to a command and pass it a validated ``settings``.

    ``moego=False`` is for commands that only read the archive: they take ``--db`` and
    ``--redact-header`` but not the flags for reaching MoeGo, which they never use.
    """

    def decorate(inner: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(inner)
        def wrapper(*args: Any, api_key: str | None = None, base_url: str | None = None, db_path: str | None = None,
                    timeout_s: float | None = None, secret_headers: tuple[str, ...] = (), config_path: str | None = None,
                    **kwargs: Any) -> Any:
            try:
                settings = load_settings(api_key=api_key, base_url=base_url, db_path=db_path, timeout_s=timeout_s,
                                         secret_headers=secret_headers, config_path=config_path)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
            return inner(*args, settings=settings, **kwargs)

        command = wrapper
        command = click.option("--redact-header", "secret_headers", multiple=True,
                               help="Another header whose values are secret (repeatable) [env MOEGO_REDACT_HEADERS].")(command)
        if moego:
            command = click.option("--timeout", "timeout_s", type=float,
                                   help="Seconds to wait for MoeGo [env MOEGO_TIMEOUT; default 30].")(command)
        command = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                               help="Alerts configuration (TOML) [env MOEGO_MONITOR_CONFIG; default moego-monitor.toml "
                                    "beside the archive].")(command)
        command = click.option("--db", "db_path", type=click.Path(dir_okay=False),
                               help="Archive file [env MOEGO_MONITOR_DB; default data/moego-monitor.db].")(command)
        if moego:
            command = click.option("--base-url", help="MoeGo API base URL [env MOEGO_BASE_URL; default https://openapi.moego.pet].")(command)
            command = click.option("--api-key", help="MoeGo API key [env MOEGO_API_KEY].")(command)
        return command

    return decorate(func) if func is not None else decorate


def one_line_errors(func: Callable[..., Any] | None = None, *, archive_access: str = "write") -> Any:
    """Turn the library's errors into ``click.ClickException`` (one line, exit status 1).

    :data:`USER_ERRORS` keep their message. A SQLite or OS error escaping a command is a failure to use
    the archive (``settings.db_path``): the line says which file and what to check, for a command that
    writes the archive (``archive_access="write"``) or only reads it (``"read"``).
    """
    if archive_access not in ("write", "read"):
        raise ValueError(f"archive_access is 'write' or 'read', not {archive_access!r}")

    def decorate(inner: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            except USER_ERRORS as exc:
                raise click.ClickException(str(exc)) from None
            except (sqlite3.Error, OSError) as exc:
                settings = kwargs.get("settings")
                db = settings.db_path if isinstance(settings, Settings) else "?"
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if archive_access == "read":
                    raise click.ClickException(
                        f"cannot read the archive at {db}: {reason}: check that --db or MOEGO_MONITOR_DB names an "
                        "intact moego-monitor archive"
                    ) from None
                raise click.ClickException(
                    f"cannot write the archive at {db} ({reason}): check the path, the disk and the permissions"
                ) from None

        return wrapper

    return decorate(func) if func is not None else decorate
