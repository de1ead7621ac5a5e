"""Incidents as a person meets them: one per rule and webhook, reminders, ack/snooze/resolve, failing channels."""

from __future__ import annotations

from datetime import timedelta

import pytest

from collectors.alerts.incidents import IncidentError, acknowledge, resolve, snooze
from collectors.models import format_timestamp

from .conftest import API_KEY, NOW, Archive, minutes_ago
from .sink import Sink

CONFIG = """
[alerts]
builtin = false
remind_every = "1h"

[[alerts.channels]]
name = "sink"
url = "env:SINK_URL"

[[alerts.rules]]
kind = "consecutive_failures"
count = 3
"""


def failing(arch: Archive, webhook_id: str = "wh_1", endpoint: str | None = None) -> None:
    arch.webhook(webhook_id, endpoint)
    arch.deliveries(webhook_id, minutes_ago(30, ok=True) + minutes_ago(15, 12, 9, 6, 3, ok=False))


def heal(arch: Archive, webhook_id: str = "wh_1", at=NOW) -> None:
    arch.deliveries(webhook_id, [(at - timedelta(seconds=30), True)])


def test_without_a_config_the_built_in_rules_open_incidents_and_notify_no_one(arch: Archive) -> None:
    failing(arch)
    arch.webhook("wh_off", active=False)
    outcome = arch.run()
    assert outcome.ok, outcome.line
    got = {(i.rule, i.webhook_id, i.state) for i in arch.incidents()}
    assert ("consecutive_failures", "wh_1", "open") in got and ("webhook_inactive", "wh_off", "open") in got
    assert arch.rows("SELECT COUNT(*) FROM incident_notifications") == [(0,)]


def test_ten_passes_send_one_message_plus_a_reminder_an_hour(arch: Archive) -> None:
    failing(arch)
    with Sink() as sink:
        arch.config_text, arch.environ = CONFIG, {"SINK_URL": sink.url}
        for minute in range(0, 100, 10):  # ten passes over 90 minutes
            assert arch.run(NOW + timedelta(minutes=minute)).ok
    assert [m["title"].split(":")[0] for m in sink.messages] == ["[moego-monitor] OPEN", "[moego-monitor] STILL OPEN"]
    assert len(arch.incidents()) == 1


def test_an_acknowledged_incident_is_not_reminded_but_still_resolves(arch: Archive) -> None:
    failing(arch)
    with Sink() as sink:
        arch.config_text, arch.environ = CONFIG, {"SINK_URL": sink.url}
        arch.run()
        incident = arch.incidents()[0]
        conn = arch.db()
        acknowledge(conn, incident.id, by="alice", now=NOW + timedelta(minutes=1))
        conn.close()
        arch.run(NOW + timedelta(hours=3))
        assert len(sink.messages) == 1
        heal(arch, at=NOW + timedelta(hours=4))
        arch.run(NOW + timedelta(hours=4))
        assert sink.messages[-1]["title"].startswith("[moego-monitor] RESOLVED")
    history = [(e.action, e.actor) for e in arch.history(incident.id)]
    assert history == [("opened", "moego-monitor"), ("notified", "moego-monitor"), ("acknowledged", "alice"),
                       ("resolved", "moego-monitor"), ("notified", "moego-monitor")]


def test_a_snooze_silences_reminders_until_it_runs_out(arch: Archive) -> None:
    failing(arch)
    with Sink() as sink:
        arch.config_text, arch.environ = CONFIG, {"SINK_URL": sink.url}
        arch.run()
        incident_id = arch.incidents()[0].id
        conn = arch.db()
        snoozed = snooze(conn, incident_id, timedelta(hours=3), by="bob", now=NOW)
        conn.close()
        assert snoozed.state == "snoozed" and snoozed.snoozed_until == NOW + timedelta(hours=3)
        arch.run(NOW + timedelta(hours=2))
        assert len(sink.messages) == 1
        arch.run(NOW + timedelta(hours=3, minutes=1))
        assert arch.incidents()[0].state == "open"
        assert [m["title"].split(":")[0] for m in sink.messages][-1] == "[moego-monitor] STILL OPEN"
    actions = [(e.action, e.actor) for e in arch.history(incident_id)]
    assert actions[2:] == [("snoozed", "bob"), ("unsnoozed", "moego-monitor"), ("notified", "moego-monitor")]


def test_resolving_by_hand_holds_until_the_condition_clears_once(arch: Archive) -> None:
    failing(arch)
    with Sink() as sink:
        arch.config_text, arch.environ = CONFIG, {"SINK_URL": sink.url}
        arch.run()
        first = arch.incidents()[0]
        conn = arch.db()
        resolve(conn, first.id, by="carol", now=NOW + timedelta(minutes=1))
        conn.close()
        arch.run(NOW + timedelta(minutes=10))  # still failing: no new incident, the person's word holds
        assert [(i.id, i.state, i.resolved_by) for i in arch.incidents()] == [(first.id, "resolved", "carol")]
        assert sink.messages[-1]["message"].startswith("Resolved by carol.")
        heal(arch, at=NOW + timedelta(minutes=20))
        arch.run(NOW + timedelta(minutes=20))
        arch.deliveries("wh_1", [(NOW + timedelta(minutes=21 + k), False) for k in range(3)])
        arch.run(NOW + timedelta(minutes=30))  # failing again after it cleared: a new incident
    states = [(i.rule, i.state) for i in arch.incidents()]
    assert states == [("consecutive_failures", "open"), ("consecutive_failures", "resolved")]


def test_actions_refuse_what_their_state_does_not_allow(arch: Archive) -> None:
    failing(arch)
    arch.run()
    incident_id = arch.incidents()[0].id
    conn = arch.db()
    try:
        with pytest.raises(IncidentError, match="no incident #999"):
            acknowledge(conn, 999, by="x")
        with pytest.raises(IncidentError, match="say who you are"):
            acknowledge(conn, incident_id, by="  ")
        resolve(conn, incident_id, by="x")
        with pytest.raises(IncidentError, match="only an open or snoozed one can be acknowledged"):
            acknowledge(conn, incident_id, by="x")
        with pytest.raises(IncidentError, match="already resolved"):
            resolve(conn, incident_id, by="x")
    finally:
        conn.close()


def test_a_failing_channel_stops_nothing_is_recorded_and_retried_next_pass(arch: Archive) -> None:
    failing(arch)
    with Sink() as good, Sink() as bad:
        bad.fail_with = 500
        arch.config_text = CONFIG.replace('[[alerts.rules]]', '''[[alerts.channels]]
name = "broken"
url = "env:BAD_URL"

[[alerts.channels]]
name = "nowhere"
url = "json://no-such-host.invalid/hook"

[[alerts.rules]]''')
        arch.environ = {"SINK_URL": good.url, "BAD_URL": bad.url}
        outcome = arch.run()
        assert len(good.messages) == 1 and len(bad.raw) == 1
        assert not outcome.ok and "2 failed" in outcome.line
        incident = arch.incidents()[0]
        failures = [e.note for e in arch.history(incident.id) if e.action == "notify_failed"]
        assert len(failures) == 2 and all("retried at the next pass" in f for f in failures)
        assert any("broken failed" in f and "json://127.0.0.1" in f for f in failures)
        assert all(bad.url not in f for f in failures)
        bad.fail_with = None
        again = arch.run(NOW + timedelta(minutes=5))
        assert len(bad.messages) == 1 and bad.messages[0]["title"].startswith("[moego-monitor] OPEN")
        assert len(good.messages) == 1  # the channel that worked is not sent the message twice
        assert "1 message sent, 1 failed" in again.line
    assert arch.rows("SELECT channel, status, attempts FROM incident_notifications ORDER BY channel") == [
        ("broken", "sent", 2), ("nowhere", "failed", 2), ("sink", "sent", 1)]


def test_no_secret_reaches_a_notification(arch: Archive) -> None:
    failing(arch, endpoint=f"https://user:pa55word@receiver.example/hooks/legacy?token=tok-{API_KEY}")
    with Sink() as sink:
        arch.config_text, arch.environ = CONFIG, {"SINK_URL": sink.url}
        arch.run()
    body = b"".join(sink.raw)
    assert b"receiver.example/hooks/legacy" in body
    for secret in (API_KEY, "pa55word", "tok-", "hdr-secret-value"):
        assert secret.encode() not in body


def test_a_message_another_process_is_sending_is_not_sent_twice(arch: Archive) -> None:
    failing(arch)
    with Sink() as sink:
        arch.config_text, arch.environ = CONFIG, {"SINK_URL": sink.url}
        conn = arch.db()
        try:
            run_alerts_without_sending(arch, conn)
            conn.execute("UPDATE incident_notifications SET status = 'sending', last_attempt_at = ?",
                         (format_timestamp(NOW),))  # claimed by another process, just now
        finally:
            conn.close()
        arch.run(NOW + timedelta(minutes=1))
        assert sink.messages == []
        arch.run(NOW + timedelta(minutes=11))  # that process died long ago: the claim has run out
        assert [m["title"].split(":")[0] for m in sink.messages] == ["[moego-monitor] OPEN"]
    assert arch.rows("SELECT status, attempts FROM incident_notifications") == [("sent", 1)]


def run_alerts_without_sending(arch: Archive, conn) -> None:
    """Open the incidents and queue their messages as a pass would, without sending them."""
    from collectors.alerts import load_config
    from collectors.alerts.engine import apply_findings
    from collectors.alerts.rules import evaluate_rules

    config = load_config(arch.settings())
    apply_findings(conn, config, evaluate_rules(conn, config, NOW), NOW)


def test_recovery_is_queued_as_a_job_and_its_outcome_lands_in_the_history(arch: Archive) -> None:
    from collectors import jobs
    from collectors.alerts.actions import queue_incident_redelivery

    failing(arch)
    assert arch.run().ok
    [incident] = arch.incidents()
    queued = queue_incident_redelivery(arch.settings(), incident.id, by="dana", now=NOW)
    # Queued, nothing sent: the five failed events wait for the background worker.
    assert (queued.to_send, queued.skipped) == (5, 0) and queued.estimate_s > 0
    assert arch.rows("SELECT state, requested_by, total FROM bulk_jobs") == [("queued", "dana", 5)]
    assert arch.rows("SELECT COUNT(*) FROM redeliveries") == [(0,)]
    jobs.request_cancel(arch.settings().db_path, queued.job_id)  # the person changes their mind before it starts
    [job] = jobs.work_pending(arch.settings(), owner="worker")
    assert job.state == "cancelled"
    assert arch.rows("SELECT action, actor, note FROM incident_events WHERE incident_id = ? AND action LIKE 'redeliver%' "
                     "ORDER BY id", incident.id) == [
        ("redelivery_queued", "dana", f"5 failed events queued as bulk job {queued.job_id} (0 skipped)"),
        ("redelivered", "dana", f"bulk job {queued.job_id} was cancelled: "
                                "0 succeeded, 0 failed, 5 skipped"),
    ]


def test_an_incident_with_nothing_left_to_redeliver_queues_no_job(arch: Archive) -> None:
    from collectors.alerts.actions import queue_incident_redelivery

    arch.webhook("wh_off", active=False)
    assert arch.run().ok
    [incident] = [i for i in arch.incidents() if i.rule == "webhook_inactive"]
    with pytest.raises(IncidentError) as info:
        queue_incident_redelivery(arch.settings(), incident.id, by="dana", now=NOW)
    assert "is not about failing deliveries" in str(info.value) and "\n" not in str(info.value)
    assert arch.rows("SELECT COUNT(*) FROM bulk_jobs") == [(0,)]
