"""moego-monitor's configuration: read once, from flags, then ``MOEGO_*`` environment, then defaults.

:func:`load_settings` is the only function in the product that reads the environment. It validates
everything once and returns a frozen :class:`Settings` that is passed down to whatever needs it.

| setting        | flag              | environment              | default                      |
|----------------|-------------------|--------------------------|------------------------------|
| api_key        | ``--api-key``     | ``MOEGO_API_KEY``        | (required to talk to MoeGo)  |
| base_url       | ``--base-url``    | ``MOEGO_BASE_URL``       | ``https://openapi.moego.pet`` |
| db_path        | ``--db``          | ``MOEGO_MONITOR_DB``     | ``data/moego-monitor.db``    |
| timeout_s      | ``--timeout``     | ``MOEGO_TIMEOUT``        | 30 seconds                   |
| secret_headers | ``--redact-header`` | ``MOEGO_REDACT_HEADERS`` (comma-separated) | none beyond the built-in list |
| overlap        | ``--overlap``     | ``MOEGO_SYNC_OVERLAP``   | 1 hour                       |
| config_path    | ``--config``      | ``MOEGO_MONITOR_CONFIG`` | ``moego-monitor.toml`` beside the archive, if present |

``environ`` keeps the environment as it was read, for the alerts configuration's ``env:NAME`` and
``${NAME}`` channel URLs (:mod:`collectors.alerts.config`); it is never shown or compared.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Mapping
from urllib.parse import urlparse

from .archive import DEFAULT_DB_PATH

__all__ = ["Settings", "ConfigError", "load_settings", "parse_duration", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://openapi.moego.pet"


class ConfigError(ValueError):
    """A setting has a value moego-monitor cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, validated. ``api_key`` never appears in ``repr``."""

    api_key: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    db_path: Path = DEFAULT_DB_PATH
    timeout_s: float = 30.0
    secret_headers: tuple[str, ...] = ()
    overlap: timedelta = timedelta(hours=1)
    page_size: int = 500
    config_path: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    def require_api_key(self) -> str:
        """The API key, or a :class:`ConfigError` saying how to provide one."""
        if not self.api_key:
            raise ConfigError("no MoeGo API key: pass --api-key or set MOEGO_API_KEY")
        return self.api_key


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``1h``, ``2d`` or a bare number of seconds as a timedelta."""
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 30s, 10m, 1h, 2d)")
    number, unit = float(m.group(1)), m.group(2) or "s"
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * number
    return timedelta(seconds=seconds)


def load_settings(environ: Mapping[str, str] | None = None, **flags: object) -> Settings:
    """Build :class:`Settings`: each flag given (not ``None``) wins, then ``MOEGO_*``, then the default."""
    env = os.environ if environ is None else environ

    def pick(flag: str, var: str, default: object) -> object:
        value = flags.get(flag)
        if value is not None and value != ():
            return value
        if env.get(var):
            return env[var]
        return default

    api_key = str(pick("api_key", "MOEGO_API_KEY", "")).strip()
    base_url = str(pick("base_url", "MOEGO_BASE_URL", DEFAULT_BASE_URL)).strip().rstrip("/")
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        shown = base_url.split("@", 1)[-1]  # never echo a user:password@ part back
        raise ConfigError(f"MoeGo base URL must be http(s)://host[:port], got {shown!r}")
    try:
        timeout_s = float(pick("timeout_s", "MOEGO_TIMEOUT", 30.0))  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError("timeout must be a number of seconds") from None
    if not 0 < timeout_s <= 600:
        raise ConfigError(f"timeout must be between 0 and 600 seconds, got {timeout_s}")
    headers = pick("secret_headers", "MOEGO_REDACT_HEADERS", ())
    if isinstance(headers, str):
        headers = [h for h in headers.split(",")]
    secret_headers = tuple(h.strip() for h in headers if str(h).strip())  # type: ignore[union-attr]
    overlap = pick("overlap", "MOEGO_SYNC_OVERLAP", timedelta(hours=1))
    if not isinstance(overlap, timedelta):
        overlap = parse_duration(str(overlap))
    page_size = int(flags.get("page_size") or 500)  # type: ignore[arg-type]
    if not 1 <= page_size <= 500:
        raise ConfigError(f"page size must be 1..500 (MoeGo's limit), got {page_size}")
    db_path = Path(str(pick("db_path", "MOEGO_MONITOR_DB", DEFAULT_DB_PATH)))
    config_path = pick("config_path", "MOEGO_MONITOR_CONFIG", None)
    if config_path is None and (db_path.parent / "moego-monitor.toml").is_file():
        config_path = db_path.parent / "moego-monitor.toml"
    return Settings(
        api_key=api_key,
        base_url=base_url,
        db_path=db_path,
        timeout_s=timeout_s,
        secret_headers=secret_headers,
        overlap=overlap,
        page_size=page_size,
        config_path=Path(str(config_path)) if config_path is not None else None,
        environ=MappingProxyType(dict(env)),
    )
