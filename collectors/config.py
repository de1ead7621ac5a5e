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
| overlap        | ``--overlap``     | ``MOEGO_SYNC_OVERLAP``   | 1 hour (0s..2d; a minimum: see below) |
| deadline_s     | ``--deadline``    | ``MOEGO_DEADLINE``       | 120 seconds (1s..1h)         |
| pass_budget    | ``--budget``      | ``MOEGO_PASS_BUDGET``    | 2 hours (1m..1d)             |
| concurrency    | ``--concurrency`` | ``MOEGO_CONCURRENCY``    | 4 webhooks at once (1..10); 1 for a MoeGo on this host |
| config_path    | ``--config``      | ``MOEGO_MONITOR_CONFIG`` | ``moego-monitor.toml`` beside the archive, if present |
| access         |                   | ``MOEGO_MONITOR_AUTH`` and family, see :mod:`collectors.access` | no login, loopback only |

A flag and its environment variable go through the same parser and the same bounds, so
``MOEGO_SYNC_OVERLAP=30d`` is refused exactly as ``--overlap 30d`` is. ``overlap`` is the least
each webhook's recent past is re-read; a webhook whose ``retryPolicy`` keeps retrying longer gets
the longer span (see :mod:`collectors.overlap`).

``concurrency`` is how many webhooks a collect pass reads at once (one archive writer commits their
pages; see :mod:`collectors.fanout`); a 429 from MoeGo lowers it for the rest of the pass
(:mod:`collectors.pacing`). Unset, it is 4 against a remote MoeGo, where each page is a network round trip
to hide, and 1 against a base URL on this host (the sandbox): there nothing waits on the network, and the
sandbox shares the collector's CPUs, so one webhook at a time with read-ahead is the quickest (bench/README.md).

``environ`` keeps the environment as it was read, for the alerts configuration's ``env:NAME`` and
``${NAME}`` channel URLs (:mod:`collectors.alerts.config`); it is never shown or compared.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Mapping
from urllib.parse import urlparse

from .access import Access, AccessConfigError, load_access
from .archive import DEFAULT_DB_PATH

__all__ = [
    "Settings", "ConfigError", "load_settings", "parse_duration", "parse_bounded_duration", "DEFAULT_BASE_URL",
    "format_span", "OVERLAP_BOUNDS", "DEADLINE_BOUNDS", "BUDGET_BOUNDS", "CONCURRENCY_BOUNDS", "DEFAULT_CONCURRENCY", "LOCAL_CONCURRENCY",
    "default_concurrency",
    "parse_concurrency",
]

DEFAULT_BASE_URL = "https://openapi.moego.pet"
#: The bounds of ``--overlap`` / ``MOEGO_SYNC_OVERLAP``.
OVERLAP_BOUNDS = (timedelta(0), timedelta(days=2))
#: The bounds of ``--deadline`` / ``MOEGO_DEADLINE``: the most one call to MoeGo may take, retries included.
DEADLINE_BOUNDS = (timedelta(seconds=1), timedelta(hours=1))
#: The bounds of ``--budget`` / ``MOEGO_PASS_BUDGET``: the most one collect pass may take.
BUDGET_BOUNDS = (timedelta(minutes=1), timedelta(days=1))
#: The bounds of ``--concurrency`` / ``MOEGO_CONCURRENCY``: webhooks read at once (MoeGo allows 10 per client).
CONCURRENCY_BOUNDS = (1, 10)
DEFAULT_CONCURRENCY = 4
#: The default against a base URL on this host (:func:`default_concurrency`).
LOCAL_CONCURRENCY = 1
#: Longer than any duration moego-monitor accepts, short enough for ``timedelta`` (about 2.7 million years).
_LONGEST = timedelta(days=999_999_999)


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
    deadline_s: float = 120.0
    pass_budget: timedelta = timedelta(hours=2)
    concurrency: int = DEFAULT_CONCURRENCY
    config_path: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)
    #: Who may use the dashboard and what they may do (:mod:`collectors.access`).
    access: Access = field(default_factory=Access)

    def require_api_key(self) -> str:
        """The API key, or a :class:`ConfigError` saying how to provide one."""
        if not self.api_key:
            raise ConfigError("no MoeGo API key: pass --api-key or set MOEGO_API_KEY")
        return self.api_key


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``1h``, ``2d`` or a bare number of seconds as a timedelta.

    Raises :class:`ConfigError` for anything else, including a number too large for a timedelta.
    """
    m = _DURATION.match(str(text)[:100])
    if not m:
        raise ConfigError(f"not a duration: {str(text)[:40]!r} (use e.g. 30s, 10m, 1h, 2d)")
    number, unit = float(m.group(1)), m.group(2) or "s"
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * number
    if not seconds < _LONGEST.total_seconds():
        raise ConfigError(f"duration too long: {str(text)[:40]!r}")
    return timedelta(seconds=seconds)


def parse_bounded_duration(name: str, value: object, bounds: tuple[timedelta, timedelta]) -> timedelta:
    """``value`` (a timedelta, or text for :func:`parse_duration`) checked against ``bounds``, both inclusive.

    The one rule for a duration setting, whether it came from a flag or from the environment.
    """
    parsed = value if isinstance(value, timedelta) else parse_duration(str(value))
    low, high = bounds
    if not low <= parsed <= high:
        raise ConfigError(f"{name} must be between {format_span(low)} and {format_span(high)}, got {str(value)[:40]}")
    return parsed


def default_concurrency(base_url: str) -> int:
    """The concurrency used when none is set: :data:`LOCAL_CONCURRENCY` for a base URL whose host is this
    machine (``localhost`` or a loopback address), :data:`DEFAULT_CONCURRENCY` otherwise."""
    host = (urlparse(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return LOCAL_CONCURRENCY
    try:
        return LOCAL_CONCURRENCY if ipaddress.ip_address(host).is_loopback else DEFAULT_CONCURRENCY
    except ValueError:
        return DEFAULT_CONCURRENCY


def parse_concurrency(value: object) -> int:
    """``value`` (an int, or its text) as the number of webhooks read at once, within :data:`CONCURRENCY_BOUNDS`.

    The one rule for ``--concurrency`` and ``MOEGO_CONCURRENCY``.
    """
    low, high = CONCURRENCY_BOUNDS
    text = str(value).strip()[:40]
    if isinstance(value, bool) or not (isinstance(value, int) or (text.isascii() and text.isdigit())):
        raise ConfigError(f"the concurrency (--concurrency, MOEGO_CONCURRENCY) must be a whole number {low}..{high}, "
                          f"got {text!r}")
    number = int(text)
    if not low <= number <= high:
        raise ConfigError(f"the concurrency (--concurrency, MOEGO_CONCURRENCY) must be between {low} and {high}, "
                          f"got {number}")
    return number


def format_span(value: timedelta) -> str:
    """A duration as the shortest exact text ``parse_duration`` reads back: ``2d``, ``90m``, ``45s``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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
    _check_base_url(base_url)
    try:
        timeout_s = float(pick("timeout_s", "MOEGO_TIMEOUT", 30.0))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError("timeout must be a number of seconds") from None
    if not 0 < timeout_s <= 600:
        raise ConfigError(f"timeout must be between 0 and 600 seconds, got {timeout_s}")
    deadline = parse_bounded_duration("the call deadline (--deadline, MOEGO_DEADLINE)",
                                      pick("deadline", "MOEGO_DEADLINE", timedelta(seconds=120)), DEADLINE_BOUNDS)
    budget = parse_bounded_duration("the pass budget (--budget, MOEGO_PASS_BUDGET)",
                                    pick("pass_budget", "MOEGO_PASS_BUDGET", timedelta(hours=2)), BUDGET_BOUNDS)
    concurrency = parse_concurrency(pick("concurrency", "MOEGO_CONCURRENCY", default_concurrency(base_url)))
    headers = pick("secret_headers", "MOEGO_REDACT_HEADERS", ())
    if isinstance(headers, str):
        headers = [h for h in headers.split(",")]
    secret_headers = tuple(h.strip() for h in headers if str(h).strip())  # type: ignore[union-attr]
    overlap = parse_bounded_duration("the overlap (--overlap, MOEGO_SYNC_OVERLAP)",
                                     pick("overlap", "MOEGO_SYNC_OVERLAP", timedelta(hours=1)), OVERLAP_BOUNDS)
    page_size = int(flags.get("page_size") or 500)  # type: ignore[arg-type]
    if not 1 <= page_size <= 500:
        raise ConfigError(f"page size must be 1..500 (MoeGo's limit), got {page_size}")
    try:
        access = load_access(env)
    except AccessConfigError as exc:
        raise ConfigError(str(exc)) from None
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
        deadline_s=deadline.total_seconds(),
        pass_budget=budget,
        concurrency=concurrency,
        config_path=Path(str(config_path)) if config_path is not None else None,
        environ=MappingProxyType(dict(env)),
        access=access,
    )


def _check_base_url(base_url: str) -> None:
    """Refuse a base URL that is not ``http(s)://host[:port]``, in one line without its credentials."""
    shown = base_url.split("@", 1)[-1][:200]  # never echo a user:password@ part back
    try:
        parsed = urlparse(base_url)
        parsed.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise ConfigError(f"MoeGo base URL is not a valid URL: {shown!r} (use http(s)://host[:port])") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"MoeGo base URL must be http(s)://host[:port], got {shown!r}")
