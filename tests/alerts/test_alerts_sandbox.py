"""End to end over loopback: the sandbox's failing webhook opens one incident, a real sink hears it once,
the webhook heals, the next pass resolves it and the sink hears the recovery."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import MappingProxyType

from collectors.alerts.incidents import history, list_incidents
from collectors.client import make_client
from collectors.collect import collect
from tests.collectors.conftest import db_rows, sandbox_settings

from .sink import Sink


def _config(tmp_path: Path, webhook_id: str) -> Path:
    path = tmp_path / "moego-monitor.toml"
    path.write_text(f"""
[alerts]
default_channels = []       # the other built-in rules open incidents but tell no one

[[alerts.channels]]
name = "sink"
url = "env:TEST_SINK_URL"

[[alerts.rules]]
kind = "consecutive_failures"
count = 5
webhooks = ["{webhook_id}"]
channels = ["sink"]
""")
    return path


def test_failing_webhook_notifies_once_then_recovers(fresh_sandbox, tmp_path: Path) -> None:
    sandbox = fresh_sandbox
    with make_client(sandbox_settings(sandbox, tmp_path / "unused.db")) as client:
        hook = next(h for h in client.list_webhooks() if h.endpoint_url.endswith("/hooks/legacy-erp"))
    endpoint = hook.endpoint_url.split("://", 1)[1]  # host:port/path, as a person reads it
    with Sink() as sink:
        settings = dataclasses.replace(
            sandbox_settings(sandbox, tmp_path / "archive.db"), config_path=_config(tmp_path, hook.id),
            environ=MappingProxyType({"TEST_SINK_URL": sink.url}),
        )
        sandbox.generate(hook.id, 12, fail_rate=1.0, spread_seconds=20)

        first = collect(settings)
        assert first.ok, first.summary_lines
        assert first.alerts is not None and first.alerts.ok, first.alerts and first.alerts.line
        assert len(sink.messages) == 1, sink.messages
        opened = sink.messages[0]
        assert opened["title"] == f"[moego-monitor] OPEN: consecutive_failures on {endpoint}"
        assert "the latest 5 deliveries all failed" in opened["message"]
        assert opened["type"] == "failure"

        for _ in range(3):  # the condition lasts: the same incident, nothing new sent
            again = collect(settings)
            assert again.ok and again.alerts.ok
        assert len(sink.messages) == 1
        ours = [i for i in list_incidents_of(settings.db_path) if i.rule == "consecutive_failures"]
        assert [(i.webhook_id, i.state) for i in ours] == [(hook.id, "open")]

        time.sleep(1.5)  # the successes come after every failure
        sandbox.generate(hook.id, 6, fail_rate=0.0, spread_seconds=1)
        healed = collect(settings)
        assert healed.ok and healed.alerts.ok, healed.alerts.line
        assert len(sink.messages) == 2
        recovered = sink.messages[1]
        assert recovered["title"] == f"[moego-monitor] RESOLVED: consecutive_failures on {endpoint}"
        assert "The condition cleared." in recovered["message"] and recovered["type"] == "success"

        collect(settings)
        assert len(sink.messages) == 2
    incident = [i for i in list_incidents_of(settings.db_path) if i.rule == "consecutive_failures"][0]
    assert incident.state == "resolved" and incident.resolved_by == "auto"
    assert [e.action for e in history_of(settings.db_path, incident.id)] == ["opened", "notified", "resolved", "notified"]
    # Nothing secret left the monitor: not the API key, not the webhook's secret token.
    for raw in sink.raw:
        assert sandbox.api_key.encode() not in raw
        assert hook.secret_token.encode() not in raw if hook.secret_token else True
    assert db_rows(settings.db_path, "SELECT COUNT(*) FROM incident_notifications WHERE status != 'sent'") == [(0,)]


def list_incidents_of(db_path: Path):
    from collectors import archive

    with archive.open_archive(db_path, readonly=True) as conn:
        return list_incidents(conn)


def history_of(db_path: Path, incident_id: int):
    from collectors import archive

    with archive.open_archive(db_path, readonly=True) as conn:
        return history(conn, incident_id)


def test_a_rule_can_redeliver_its_failed_events_once_the_receiver_is_back(fresh_sandbox, tmp_path: Path) -> None:
    sandbox = fresh_sandbox
    with make_client(sandbox_settings(sandbox, tmp_path / "unused.db")) as client:
        hook = next(h for h in client.list_webhooks() if h.endpoint_url.endswith("/hooks/orders-sync"))
    config = tmp_path / "moego-monitor.toml"
    config.write_text(f"""
[alerts]
builtin = false

[[alerts.rules]]
kind = "consecutive_failures"
count = 5
webhooks = ["{hook.id}"]
auto_redeliver = true
auto_redeliver_cap = 3
""")
    settings = dataclasses.replace(sandbox_settings(sandbox, tmp_path / "archive.db"), config_path=config)
    sandbox.generate(hook.id, 8, fail_rate=1.0, spread_seconds=20)
    opened = collect(settings)
    assert [i.rule for i in opened.alerts.changes.opened] == ["consecutive_failures"]
    time.sleep(1.5)
    sandbox.generate(hook.id, 3, fail_rate=0.0, spread_seconds=1)
    healed = collect(settings)
    assert healed.alerts.ok, healed.alerts.line
    (incident,) = healed.alerts.changes.resolved
    assert healed.alerts.redelivered == [f"incident #{incident.id} redelivered: 3 succeeded, 0 failed, 0 skipped"]
    audit = db_rows(settings.db_path, "SELECT outcome, requested_by FROM redeliveries")
    assert audit == [("sent", "incident")] * 3
    # Only events that never succeeded were sent, and the new attempts are archived.
    sent = db_rows(settings.db_path, "SELECT d.success FROM redeliveries r JOIN deliveries d ON d.id = r.new_delivery_id")
    assert len(sent) == 3
    actions = [(e.action, e.actor) for e in history_of(settings.db_path, incident.id)]
    assert actions[-1] == ("redelivered", "auto-redeliver")
