"""What every ``moego-monitor`` command shares: click settings, the settings flags, one-line errors.

Kept apart from :mod:`collectors.cli` so command modules (``collectors.commands``,
``dashboard.commands``) can use it without importing the command group that registers them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from .archive import ArchiveError
from .client import MoeGoError
from .config import ConfigError, load_settings

__all__ = ["CONTEXT_SETTINGS", "USER_ERRORS", "settings_options", "one_line_errors"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Errors a command reports as one line and exit status 1.
USER_ERRORS = (ConfigError, MoeGoError, ArchiveError)


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared connection/archive flags to a command and pass it a validated ``settings``."""

    @click.option("--api-key", help="MoeGo API key [env MOEGO_API_KEY].")
    @click.option("--base-url", help="MoeGo API base URL [env MOEGO_BASE_URL; default https://openapi.moego.pet].")
    @click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Archive file [env MOEGO_MONITOR_DB; default data/moego-monitor.db].")
    @click.option("--timeout", "timeout_s", type=float, help="Seconds to wait for MoeGo [env MOEGO_TIMEOUT; default 30].")
    @click.option("--redact-header", "secret_headers", multiple=True, help="Another header whose values are secret (repeatable) [env MOEGO_REDACT_HEADERS].")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False),
                  help="Alerts configuration (TOML) [env MOEGO_MONITOR_CONFIG; default moego-monitor.toml beside the archive].")
    @functools.wraps(func)
    def wrapper(*args: Any, api_key: str | None, base_url: str | None, db_path: str | None,
                timeout_s: float | None, secret_headers: tuple[str, ...], config_path: str | None, **kwargs: Any) -> Any:
        try:
            settings = load_settings(api_key=api_key, base_url=base_url, db_path=db_path, timeout_s=timeout_s,
                                     secret_headers=secret_headers, config_path=config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        return func(*args, settings=settings, **kwargs)

    return wrapper


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's errors into ``click.ClickException`` (one line, exit status 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper
