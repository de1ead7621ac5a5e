"""``moego-monitor alerts ...`` through click, on real archives; a bad config never stops collection."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

from click.testing import CliRunner

from collectors.cli.alerts import alerts_group
from collectors.collect import collect
from tests.collectors.conftest import sandbox_settings

from .conftest import Archive, minutes_ago
from .sink import Sink


def invoke(arch: Archive, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(alerts_group, [*args[:1], "--db", str(arch.path), *args[1:]],
                              env={"MOEGO_MONITOR_CONFIG": "", **(env or {})})


def failing(arch: Archive) -> None:
    """A webhook synced just now whose latest five deliveries failed (the commands read the wall clock)."""
    now = datetime.now(timezone.utc)
    arch.webhook("wh_1", synced=now)
    arch.deliveries("wh_1", minutes_ago(15, 12, 9, 6, 3, ok=False, now=now))


def test_every_alerts_command_has_help() -> None:
    for name, command in alerts_group.commands.items():
        result = CliRunner().invoke(alerts_group, [name, "--help"])
        assert result.exit_code == 0 and command.help and command.help.split(".")[0][:30] in " ".join(result.output.split())


def test_check_opens_incidents_and_list_exits_2_while_any_is_unresolved(arch: Archive) -> None:
    assert invoke(arch, "list").output == "no incidents\n"
    assert invoke(arch, "list").exit_code == 0
    failing(arch)
    checked = invoke(arch, "check")
    assert checked.exit_code == 2
    assert "alerts: 1 opened, 0 resolved, 0 reminded, 1 unresolved" in checked.output
    listed = invoke(arch, "list", "--json")
    assert listed.exit_code == 2
    (incident,) = json.loads(listed.output)["incidents"]
    assert (incident["rule"], incident["webhookId"], incident["state"], incident["endpoint"]) == \
        ("consecutive_failures", "wh_1", "open", "receiver.example/wh_1")


def test_ack_snooze_resolve_record_who(arch: Archive) -> None:
    failing(arch)
    invoke(arch, "check")
    acked = invoke(arch, "ack", "1", "--by", "alice")
    assert acked.exit_code == 0 and "#1    ACKNOWLEDGED" in acked.output
    snoozed = invoke(arch, "snooze", "1", "--for", "2h", "--by", "bob")
    assert snoozed.exit_code == 0 and "SNOOZED until" in snoozed.output
    assert invoke(arch, "snooze", "1", "--for", "soon").exit_code == 2  # click's usage error for a bad value
    resolved = invoke(arch, "resolve", "1", "--by", "carol")
    assert resolved.exit_code == 0 and "RESOLVED" in resolved.output and "by carol" in resolved.output
    shown = invoke(arch, "show", "1").output
    assert "acknowledged   alice" in shown and "snoozed        bob" in shown and "resolved       carol" in shown
    again = invoke(arch, "resolve", "1")
    assert again.exit_code == 1 and again.output == "Error: incident #1 is already resolved\n"
    assert invoke(arch, "ack", "42").output == "Error: no incident #42: 'moego-monitor alerts list' shows them\n"


def test_a_bad_config_is_one_line_naming_key_and_line(arch: Archive, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[alerts]\nremind_every = "soon"\n')
    result = invoke(arch, "check", "--config", str(bad))
    assert result.exit_code == 1
    assert result.output == (f"Error: {bad} line 2: alerts.remind_every: expected a duration such as \"30m\" or \"2h\", "
                             "got 'soon'\n")


def test_test_says_which_channel_failed_and_why(arch: Archive, tmp_path: Path) -> None:
    config = tmp_path / "alerts.toml"
    with Sink() as good, Sink() as bad:
        bad.fail_with = 503
        config.write_text(f'[[alerts.channels]]\nname = "good"\nurl = "{good.url}"\n'
                          '[[alerts.channels]]\nname = "bad"\nurl = "env:BAD_URL"\n')
        result = invoke(arch, "test", "--config", str(config), env={"BAD_URL": bad.url + "?token=sekrit"})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "ok      good (json://127.0.0.1)"
    assert lines[1].startswith("FAILED  bad: json://127.0.0.1: ") and "503" in lines[1]
    assert lines[2] == "Error: 1 of 2 channels failed"
    assert "sekrit" not in result.output
    assert good.messages[0]["title"] == "[moego-monitor] Test message"


def test_a_bad_config_file_does_not_stop_collection(sandbox, tmp_path: Path) -> None:
    bad = tmp_path / "alerts.toml"
    bad.write_text('[[alerts.rules]]\nkind = "success_rate"\nthreshold = 2\n')
    settings = dataclasses.replace(sandbox_settings(sandbox, tmp_path / "a.db"), config_path=bad,
                                   environ=MappingProxyType({}))
    result = collect(settings)
    assert result.ok and result.new > 0
    assert result.alerts.line == (f"alerts: not evaluated: {bad} line 3: alerts.rules[1].threshold: expected a share "
                                  "between 0 and 1 (0.95 = 95%), got 2")
