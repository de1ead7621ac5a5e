"""The configuration file: what it means, and every mistake as one line naming the key and its line."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from collectors.alerts.config import AlertsConfigError, load_alerts_config, parse_alerts_config, shown_url


def error_of(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(AlertsConfigError) as caught:
        parse_alerts_config(text, environ or {}, source="alerts.toml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_no_file_runs_the_built_in_rules_and_notifies_no_one() -> None:
    config = load_alerts_config(None, {})
    rule = config.rule_for("success_rate", "wh_1")
    assert rule is not None and rule.params["threshold"] == 0.9 and rule.params["window"] == timedelta(hours=1)
    assert config.channels_of(rule) == ()


def test_a_per_webhook_rule_overrides_the_kinds_general_rule() -> None:
    config = parse_alerts_config("""
[[alerts.channels]]
name = "ops"
url = "json://127.0.0.1:9/hook"

[[alerts.rules]]
kind = "success_rate"
threshold = 0.95
window = "30m"

[[alerts.rules]]
kind = "success_rate"
webhooks = ["wh_legacy"]
threshold = 0.5
""", {})
    legacy, other = config.rule_for("success_rate", "wh_legacy"), config.rule_for("success_rate", "wh_other")
    assert (legacy.params["threshold"], legacy.params["window"]) == (0.5, timedelta(minutes=30))
    assert (other.params["threshold"], other.params["window"]) == (0.95, timedelta(minutes=30))
    assert config.channels_of(other) == ("ops",)  # no channels named: every channel


def test_an_override_written_before_its_general_rule_still_starts_from_it() -> None:
    config = parse_alerts_config("""
[[alerts.rules]]
kind = "success_rate"
webhooks = ["wh_legacy"]
threshold = 0.5

[[alerts.rules]]
kind = "success_rate"
window = "30m"
""", {})
    legacy = config.rule_for("success_rate", "wh_legacy")
    assert (legacy.params["threshold"], legacy.params["window"]) == (0.5, timedelta(minutes=30))


def test_builtin_false_runs_only_the_listed_rules() -> None:
    config = parse_alerts_config('[alerts]\nbuiltin = false\n[[alerts.rules]]\nkind = "silence"\n', {})
    assert config.rule_for("silence", "wh_1") is not None
    assert config.rule_for("success_rate", "wh_1") is None


def test_channel_urls_come_from_the_environment_and_are_shown_without_secrets() -> None:
    config = parse_alerts_config("""
[[alerts.channels]]
name = "slack"
url = "env:SLACK_URL"

[[alerts.channels]]
name = "mail"
url = "mailtos://alerts:${MAIL_PASSWORD}@mail.example.com?to=ops@example.com"
""", {"SLACK_URL": "slack://T0000AAAA/B0000BBBB/SecretSecretSecret000000", "MAIL_PASSWORD": "p4ssw0rd-secret"})
    slack, mail = config.channels
    assert slack.url == "slack://T0000AAAA/B0000BBBB/SecretSecretSecret000000"
    assert "p4ssw0rd-secret" in mail.url
    assert (slack.shown, mail.shown) == ("slack://…", "mailtos://mail.example.com")
    assert "Secret" not in repr(config) and "secret" not in repr(config)


def test_apprise_never_writes_a_token_to_the_log() -> None:
    """Apprise logs the token of a URL it rejects; nothing of it may reach the application's log handlers."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    handler = Collect(level=logging.DEBUG)
    root.addHandler(handler)
    try:
        with pytest.raises(AlertsConfigError) as caught:
            parse_alerts_config('[[alerts.channels]]\nname = "s"\nurl = "slack://T0/B0/xoxb-leaky-token"\n', {})
    finally:
        root.removeHandler(handler)
    assert "leaky" not in str(caught.value)
    assert not [m for m in seen if "leaky" in m]


@pytest.mark.parametrize(("text", "expected"), [
    ("[alerts\nremind_every = 1", "alerts.toml: not valid TOML: "),
    ('[alerts]\nremind_evry = "1h"\n', "alerts.toml line 2: alerts.remind_evry: unknown key"),
    ('[[alerts.rules]]\nkind = "success_rate"\n\n[[alerts.rules]]\nkind = "latency_p95"\nthreshold = "high"\n',
     "alerts.toml line 6: alerts.rules[2].threshold: unknown key for latency_p95 (its parameters: min_deliveries, threshold_ms, window)"),
    ('[[alerts.rules]]\nkind = "success_rate"\nthreshold = "high"\n',
     "alerts.toml line 3: alerts.rules[1].threshold: expected a number, got 'high'"),
    ('[[alerts.rules]]\nkind = "success_rate"\nthreshold = 95\n',
     "alerts.toml line 3: alerts.rules[1].threshold: expected a share between 0 and 1 (0.95 = 95%), got 95"),
    ('[[alerts.rules]]\nkind = "succes_rate"\n', "alerts.toml line 2: alerts.rules[1].kind: expected one of success_rate, "),
    ('[[alerts.rules]]\nkind = "silence"\nspan = "soon"\n',
     "alerts.toml line 3: alerts.rules[1].span: expected a duration such as \"30m\" or \"2h\", got 'soon'"),
    ('[[alerts.rules]]\nkind = "silence"\nchannels = ["pager"]\n',
     "alerts.toml line 3: alerts.rules[1].channels: no channel named 'pager'"),
    ('[[alerts.channels]]\nname = "ops"\nurl = "env:OPS_URL"\n',
     "alerts.toml line 3: alerts.channels[1].url: the environment variable OPS_URL is not set"),
    ('[[alerts.channels]]\nname = "ops"\nurl = "nosuchscheme://host/token123"\n',
     "alerts.toml line 3: alerts.channels[1].url: Apprise cannot send to this URL (nosuchscheme://…)"),
    ('[[alerts.rules]]\nkind = "webhook_inactive"\nauto_redeliver = true\n',
     "alerts.toml line 3: alerts.rules[1].auto_redeliver: only rules about failing deliveries"),
])
def test_a_mistake_is_one_line_naming_the_key_and_its_line(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_a_missing_variable_is_named_but_no_value_is_echoed() -> None:
    message = error_of('[[alerts.channels]]\nname = "ops"\nurl = "slack://${TEAM}/B0/${TOKEN}"\n', {"TEAM": "T0SECRET"})
    assert "TOKEN is not set" in message and "T0SECRET" not in message


def test_a_missing_file_is_one_line(tmp_path) -> None:
    with pytest.raises(AlertsConfigError, match=r"no such alerts configuration file"):
        load_alerts_config(tmp_path / "nope.toml", {})


def test_shown_url_never_has_credentials() -> None:
    assert shown_url("json://user:pw@hooks.example:8443/path?token=x") == "json://hooks.example"
    assert shown_url("pagerduty://integration-key@api-key") == "pagerduty://…"
