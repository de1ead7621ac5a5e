"""The alerts configuration: one TOML file, validated once, every mistake one line naming key and line.

Where it comes from (see :mod:`collectors.config`): ``--config``, then ``MOEGO_MONITOR_CONFIG``, then
``moego-monitor.toml`` beside the archive if present. Without a file the built-in rules still run
(they open incidents in the archive and the dashboard) and notify no one.

Shape::

    [alerts]
    remind_every = "4h"            # reminders while an incident stays open ("off": none)
    default_channels = ["ops"]     # channels of a rule that names none (default: every channel)
    builtin = true                 # false: only the rules listed below run
    dashboard_url = "http://localhost:8501"   # optional: a link in each message

    [[alerts.channels]]
    name = "ops"
    url = "env:SLACK_URL"          # the whole URL from the environment, or ${VAR} inside a URL

    [[alerts.rules]]
    kind = "success_rate"          # parameters of the kind (defaults in RULE_PARAMS)
    threshold = 0.95
    webhooks = ["whk_1"]           # optional: this rule only for these webhooks (a per-webhook override)
    channels = ["ops"]
    remind_every = "1h"
    auto_redeliver = true          # delivery rules: redeliver never-succeeded events once it resolves
    auto_redeliver_cap = 50

A rule without ``webhooks`` sets the parameters of its kind for every webhook; one with ``webhooks``
overrides them for those webhooks. Channel URLs are Apprise URLs (``slack://``, ``mailtos://``,
``json://``, ...). They often hold secrets, so they are read from the environment and only ever
shown as :attr:`Channel.shown` (scheme and host).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from ..archive.status import STALE_AFTER
from ..config import ConfigError, parse_duration

__all__ = [
    "AlertsConfigError",
    "RULE_KINDS",
    "DELIVERY_KINDS",
    "RULE_PARAMS",
    "Channel",
    "RuleConfig",
    "AlertsConfig",
    "load_alerts_config",
    "parse_alerts_config",
    "shown_url",
]


class AlertsConfigError(ConfigError):
    """The alerts configuration file cannot be used; the message names the file, line and key."""


#: Every built-in rule kind, in the order they are evaluated and listed.
RULE_KINDS: tuple[str, ...] = (
    "success_rate", "consecutive_failures", "latency_p95", "silence", "webhook_inactive",
    "unrecovered_failures", "collector_stale", "at_risk",
)
#: Kinds whose incidents are about failing deliveries (their failed events can be redelivered).
DELIVERY_KINDS: frozenset[str] = frozenset({"success_rate", "consecutive_failures", "unrecovered_failures"})

# kind -> parameter -> (type name, default). Types: rate (0..1), int (>= 1), ms (>= 1), duration, float (>= 0).
RULE_PARAMS: dict[str, dict[str, tuple[str, Any]]] = {
    "success_rate": {"threshold": ("rate", 0.9), "window": ("duration", timedelta(hours=1)),
                     "min_deliveries": ("int", 10)},
    "consecutive_failures": {"count": ("int", 5)},
    "latency_p95": {"threshold_ms": ("ms", 10_000), "window": ("duration", timedelta(hours=1)),
                    "min_deliveries": ("int", 20)},
    "silence": {"span": ("duration", timedelta(hours=2)), "min_expected": ("float", 5.0)},
    "webhook_inactive": {},
    "unrecovered_failures": {"before": ("duration", timedelta(hours=48)), "min_events": ("int", 1)},
    "collector_stale": {"span": ("duration", STALE_AFTER)},
    "at_risk": {},
}
_RULE_COMMON = {"kind", "webhooks", "channels", "remind_every", "enabled", "auto_redeliver", "auto_redeliver_cap"}
_ALERTS_KEYS = {"remind_every", "default_channels", "builtin", "dashboard_url", "channels", "rules"}
_CHANNEL_KEYS = {"name", "url"}
_ENV_WHOLE = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
_ENV_INLINE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Schemes whose host is shown (it names a server, not a token); other URLs show their scheme only.
_HOST_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos", "ntfy", "ntfys",
                           "http", "https", "gotify", "gotifys", "mmost", "mmosts", "rocket", "rockets"})


def shown_url(url: str) -> str:
    """What may be shown of a channel URL: ``json://127.0.0.1`` or ``slack://…``: never a token or password."""
    try:
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        host = parsed.hostname or ""
    except ValueError:
        return "(unreadable URL)"
    if not scheme:
        return "(no scheme)"
    if scheme in _HOST_SCHEMES and host:
        return f"{scheme}://{host}"
    return f"{scheme}://…"


@dataclass(frozen=True)
class Channel:
    """A named Apprise URL. ``url`` is secret: never log or show it, show :attr:`shown`."""

    name: str
    url: str = field(repr=False)
    shown: str = ""


@dataclass(frozen=True)
class RuleConfig:
    """One rule kind's settings for some webhooks (all when ``webhooks`` is empty)."""

    kind: str
    params: Mapping[str, Any]
    channels: tuple[str, ...] | None = None     # None: the default channels
    remind_every: timedelta | None = None       # None: no reminders
    webhooks: tuple[str, ...] = ()
    enabled: bool = True
    auto_redeliver: bool = False
    auto_redeliver_cap: int = 50


@dataclass(frozen=True)
class AlertsConfig:
    """The validated configuration; :meth:`rule_for` answers which settings apply to a webhook."""

    path: Path | None = None
    channels: tuple[Channel, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    remind_every: timedelta | None = timedelta(hours=4)
    default_channels: tuple[str, ...] | None = None
    builtin: bool = True
    dashboard_url: str = ""

    def channel(self, name: str) -> Channel | None:
        """The channel called ``name``, if configured."""
        return next((c for c in self.channels if c.name == name), None)

    def rule_for(self, kind: str, webhook_id: str) -> RuleConfig | None:
        """The settings of ``kind`` for ``webhook_id`` ('' for archive-wide rules), or None when it does not run.

        A rule listing the webhook wins over the kind's general rule, which wins over the built-in default.
        """
        general = None
        for rule in self.rules:
            if rule.kind != kind:
                continue
            if rule.webhooks and webhook_id in rule.webhooks:
                return rule if rule.enabled else None
            if not rule.webhooks:
                general = rule
        if general is not None:
            return general if general.enabled else None
        if not self.builtin:
            return None
        return RuleConfig(kind=kind, params=_defaults(kind), remind_every=self.remind_every)

    def channels_of(self, rule: RuleConfig) -> tuple[str, ...]:
        """The channel names a rule notifies."""
        if rule.channels is not None:
            return rule.channels
        if self.default_channels is not None:
            return self.default_channels
        return tuple(c.name for c in self.channels)


def _defaults(kind: str) -> dict[str, Any]:
    return {name: default for name, (_, default) in RULE_PARAMS[kind].items()}


class _Lines:
    """Line numbers of sections and keys in the TOML text, for error messages (tomllib keeps none)."""

    def __init__(self, text: str) -> None:
        self.sections: list[tuple[str, int, int]] = []  # (header, index among same headers, line)
        self.keys: list[tuple[int, str, int]] = []      # (section position, key, line)
        counts: dict[str, int] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            header = re.match(r"^\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?", line)
            if header and not re.match(r"^\[?[A-Za-z0-9_\"'.-]+\s*=", line):
                name = header.group(1).replace(" ", "")
                counts[name] = counts.get(name, 0) + 1
                self.sections.append((name, counts[name] - 1, number))
                continue
            key = re.match(r"^([A-Za-z0-9_\"'.-]+)\s*=", line)
            if key:
                self.keys.append((len(self.sections) - 1, key.group(1).strip("\"'"), number))

    def of(self, section: str, index: int = 0, key: str | None = None) -> int | None:
        """The line of ``key`` in the ``index``-th ``[section]`` (or of the header), if found."""
        for position, (name, nth, number) in enumerate(self.sections):
            if name == section and nth == index:
                if key is None:
                    return number
                for pos, name_, line in self.keys:
                    if pos == position and name_.split(".")[-1] == key:
                        return line
                return number
        if section == "alerts" and key is not None:  # keys written as alerts.x = ... at the top level
            for pos, name_, line in self.keys:
                if name_ in (f"alerts.{key}", key):
                    return line
        return None


class _Checker:
    """Validation with errors that name the file, the line and the key."""

    def __init__(self, source: str, lines: _Lines, environ: Mapping[str, str]) -> None:
        self.source, self.lines, self.environ = source, lines, environ

    def fail(self, where: str, section: str, index: int, key: str | None, message: str) -> AlertsConfigError:
        line = self.lines.of(section, index, key)
        at = f"{self.source} line {line}" if line else self.source
        return AlertsConfigError(f"{at}: {where}: {message}")

    def duration(self, value: Any, where: str, section: str, index: int, key: str,
                 *, allow_off: bool = False) -> timedelta | None:
        if allow_off and (value is False or (isinstance(value, str) and value.strip().lower() in ("off", "0", ""))):
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(where, section, index, key, f"expected a duration such as \"30m\" or \"2h\", got {_kind(value)}")
        try:
            parsed = parse_duration(str(value))
        except ConfigError:
            raise self.fail(where, section, index, key, f"expected a duration such as \"30m\" or \"2h\", got {value!r}") from None
        if parsed <= timedelta(0) or parsed > timedelta(days=30):
            raise self.fail(where, section, index, key, "must be more than 0 and at most 30 days")
        return parsed

    def names(self, value: Any, where: str, section: str, index: int, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(where, section, index, key, f"expected a list of names, got {_kind(value)}")
        return tuple(v.strip() for v in value)

    def flag(self, value: Any, where: str, section: str, index: int, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, section, index, key, f"expected true or false, got {_kind(value)}")
        return value

    def expand(self, value: str, where: str, section: str, index: int, key: str) -> str:
        whole = _ENV_WHOLE.match(value.strip())
        if whole:
            name = whole.group(1)
            if not self.environ.get(name):
                raise self.fail(where, section, index, key, f"the environment variable {name} is not set")
            return self.environ[name].strip()

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if not self.environ.get(name):
                raise self.fail(where, section, index, key, f"the environment variable {name} is not set")
            return self.environ[name]

        return _ENV_INLINE.sub(one, value).strip()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"{value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def load_alerts_config(path: Path | None, environ: Mapping[str, str]) -> AlertsConfig:
    """Read and validate the file at ``path`` (None: the built-in defaults, no channels).

    Raises :class:`AlertsConfigError` with one line naming the file, the line and the key.
    """
    if path is None:
        return AlertsConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AlertsConfigError(f"{path}: no such alerts configuration file (check --config or MOEGO_MONITOR_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AlertsConfigError(f"{path}: cannot read the alerts configuration ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_alerts_config(text, environ, source=str(path), path=Path(path))


def parse_alerts_config(text: str, environ: Mapping[str, str], *, source: str = "moego-monitor.toml",
                        path: Path | None = None) -> AlertsConfig:
    """Validate TOML ``text`` (see the module docstring); :class:`AlertsConfigError` for the first mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AlertsConfigError(f"{source}: not valid TOML: {exc}") from None
    lines = _Lines(text)
    check = _Checker(source, lines, environ)
    unknown_top = sorted(set(data) - {"alerts"})
    if unknown_top:
        raise check.fail(unknown_top[0], unknown_top[0], 0, None, "unknown table (everything goes under [alerts])")
    alerts = data.get("alerts", {})
    if not isinstance(alerts, dict):
        raise check.fail("alerts", "alerts", 0, None, "expected a table [alerts]")
    for key in sorted(set(alerts) - _ALERTS_KEYS):
        raise check.fail(f"alerts.{key}", "alerts", 0, key,
                         f"unknown key (known: {', '.join(sorted(_ALERTS_KEYS))})")
    remind = timedelta(hours=4)
    if "remind_every" in alerts:
        remind = check.duration(alerts["remind_every"], "alerts.remind_every", "alerts", 0, "remind_every", allow_off=True)
    builtin = check.flag(alerts["builtin"], "alerts.builtin", "alerts", 0, "builtin") if "builtin" in alerts else True
    dashboard_url = ""
    if "dashboard_url" in alerts:
        value = alerts["dashboard_url"]
        parsed = urlparse(value) if isinstance(value, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise check.fail("alerts.dashboard_url", "alerts", 0, "dashboard_url", "expected an http(s):// URL")
        dashboard_url = value.rstrip("/")

    channels = _channels(alerts.get("channels", []), check)
    names = {c.name for c in channels}
    default_channels = None
    if "default_channels" in alerts:
        default_channels = check.names(alerts["default_channels"], "alerts.default_channels", "alerts", 0,
                                       "default_channels") if alerts["default_channels"] != [] else ()
        for name in default_channels:
            if name not in names:
                raise check.fail("alerts.default_channels", "alerts", 0, "default_channels", f"no channel named {name!r}")
    rules = _rules(alerts.get("rules", []), check, names, remind)
    return AlertsConfig(path=path, channels=channels, rules=rules, remind_every=remind,
                        default_channels=default_channels, builtin=builtin, dashboard_url=dashboard_url)


def _channels(raw: Any, check: _Checker) -> tuple[Channel, ...]:
    from .notify import load_apprise  # loading Apprise costs time: only configurations with channels need it

    apprise = load_apprise()

    if not isinstance(raw, list):
        raise check.fail("alerts.channels", "alerts", 0, "channels", "expected [[alerts.channels]] tables")
    out: list[Channel] = []
    for index, item in enumerate(raw):
        where = f"alerts.channels[{index + 1}]"
        section = "alerts.channels"
        if not isinstance(item, dict):
            raise check.fail(where, section, index, None, "expected a table")
        for key in sorted(set(item) - _CHANNEL_KEYS):
            raise check.fail(f"{where}.{key}", section, index, key, "unknown key (a channel has name and url)")
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise check.fail(f"{where}.name", section, index, "name",
                             "expected a name of letters, digits, '_', '.' or '-' (at most 40)")
        if any(c.name == name for c in out):
            raise check.fail(f"{where}.name", section, index, "name", f"a second channel named {name!r}")
        url = item.get("url")
        if not isinstance(url, str) or not url.strip():
            raise check.fail(f"{where}.url", section, index, "url",
                             "expected an Apprise URL, or env:VARIABLE to read it from the environment")
        resolved = check.expand(url, f"{where}.url", section, index, "url")
        if apprise.Apprise.instantiate(resolved, suppress_exceptions=True) is None:
            raise check.fail(f"{where}.url", section, index, "url",
                             f"Apprise cannot send to this URL ({shown_url(resolved)}): check its scheme and parts")
        out.append(Channel(name=name, url=resolved, shown=shown_url(resolved)))
    return tuple(out)


def _rules(raw: Any, check: _Checker, channel_names: set[str], remind: timedelta | None) -> tuple[RuleConfig, ...]:
    if not isinstance(raw, list):
        raise check.fail("alerts.rules", "alerts", 0, "rules", "expected [[alerts.rules]] tables")
    out: list[RuleConfig] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise check.fail(f"alerts.rules[{index + 1}]", "alerts.rules", index, None, "expected a table")
    # General rules first, so that an override starts from its kind's general rule wherever it is written.
    order = [i for i, item in enumerate(raw) if "webhooks" not in item] + [i for i, item in enumerate(raw) if "webhooks" in item]
    for index in order:
        item = raw[index]
        where = f"alerts.rules[{index + 1}]"
        section = "alerts.rules"
        kind = item.get("kind")
        if kind not in RULE_PARAMS:
            raise check.fail(f"{where}.kind", section, index, "kind", f"expected one of {', '.join(RULE_KINDS)}, "
                             f"got {_kind(kind) if kind is not None else 'nothing'}")
        allowed = _RULE_COMMON | set(RULE_PARAMS[kind])
        for key in sorted(set(item) - allowed):
            raise check.fail(f"{where}.{key}", section, index, key,
                             f"unknown key for {kind} (its parameters: {', '.join(sorted(RULE_PARAMS[kind])) or 'none'})")
        params = _defaults(kind)
        general = next((r for r in out if r.kind == kind and not r.webhooks), None)
        webhooks: tuple[str, ...] = ()
        if "webhooks" in item:
            webhooks = check.names(item["webhooks"], f"{where}.webhooks", section, index, "webhooks")
            if not webhooks:
                raise check.fail(f"{where}.webhooks", section, index, "webhooks", "list at least one webhook id")
            if kind == "collector_stale":
                raise check.fail(f"{where}.webhooks", section, index, "webhooks", "collector_stale is about the whole archive")
            if general is not None:
                params.update(general.params)  # an override starts from its kind's general rule
        elif general is not None:
            raise check.fail(where, section, index, "kind",
                             f"a second {kind} rule for every webhook: give it webhooks = [...] to override some")
        for name, (type_name, _) in RULE_PARAMS[kind].items():
            if name in item:
                params[name] = _param(item[name], type_name, f"{where}.{name}", section, index, name, check)
        channels = None
        if "channels" in item:
            channels = check.names(item["channels"], f"{where}.channels", section, index, "channels") \
                if item["channels"] != [] else ()
            for name in channels:
                if name not in channel_names:
                    raise check.fail(f"{where}.channels", section, index, "channels", f"no channel named {name!r}")
        elif general is not None and webhooks:
            channels = general.channels
        rule_remind = general.remind_every if (general is not None and webhooks) else remind
        if "remind_every" in item:
            rule_remind = check.duration(item["remind_every"], f"{where}.remind_every", section, index,
                                         "remind_every", allow_off=True)
        enabled = check.flag(item["enabled"], f"{where}.enabled", section, index, "enabled") if "enabled" in item else True
        auto = False
        if "auto_redeliver" in item:
            auto = check.flag(item["auto_redeliver"], f"{where}.auto_redeliver", section, index, "auto_redeliver")
            if auto and kind not in DELIVERY_KINDS:
                raise check.fail(f"{where}.auto_redeliver", section, index, "auto_redeliver",
                                 f"only rules about failing deliveries ({', '.join(sorted(DELIVERY_KINDS))}) can redeliver")
        elif general is not None and webhooks:
            auto = general.auto_redeliver
        cap = general.auto_redeliver_cap if (general is not None and webhooks) else 50
        if "auto_redeliver_cap" in item:
            cap = _param(item["auto_redeliver_cap"], "int", f"{where}.auto_redeliver_cap", section, index,
                         "auto_redeliver_cap", check)
            if cap > 2000:
                raise check.fail(f"{where}.auto_redeliver_cap", section, index, "auto_redeliver_cap", "at most 2000")
        out.append(RuleConfig(kind=kind, params=params, channels=channels, remind_every=rule_remind,
                              webhooks=webhooks, enabled=enabled, auto_redeliver=auto, auto_redeliver_cap=cap))
    return tuple(out)


def _param(value: Any, type_name: str, where: str, section: str, index: int, key: str, check: _Checker) -> Any:
    if type_name == "duration":
        return check.duration(value, where, section, index, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise check.fail(where, section, index, key, f"expected a number, got {_kind(value)}")
    if type_name == "rate":
        if not 0 < value <= 1:
            raise check.fail(where, section, index, key, f"expected a share between 0 and 1 (0.95 = 95%), got {value}")
        return float(value)
    if type_name in ("int", "ms"):
        if value != int(value) or value < 1:
            raise check.fail(where, section, index, key, f"expected a whole number of at least 1, got {value}")
        return int(value)
    if value < 0:
        raise check.fail(where, section, index, key, f"expected a number of at least 0, got {value}")
    return float(value)
