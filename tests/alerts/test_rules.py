"""Each built-in rule fires on the situation it names, and stays quiet just short of it."""

from __future__ import annotations

from datetime import timedelta

from collectors.alerts.config import parse_alerts_config
from collectors.alerts.rules import evaluate_rules, p95_ms, window_counts
from collectors.models import format_timestamp

from .conftest import NOW, Archive, minutes_ago


def fired(arch: Archive, text: str = "", now=NOW) -> dict[tuple[str, str], str]:
    config = parse_alerts_config(text, {})
    conn = arch.db(readonly=True)
    try:
        evaluation = evaluate_rules(conn, config, now)
    finally:
        conn.close()
    assert not evaluation.errors
    return {(f.rule, f.webhook_id): f.summary for f in evaluation.findings}


def test_success_rate_below_threshold_with_enough_deliveries(arch: Archive) -> None:
    arch.webhook("wh_1")
    arch.deliveries("wh_1", minutes_ago(*range(1, 50, 5), ok=True) + minutes_ago(2, 7, 12, ok=False))
    found = fired(arch)
    assert found[("success_rate", "wh_1")].startswith("76.9% of 13 deliveries succeeded in the last 60 min (threshold 90.0%): 3 failed")
    assert ("success_rate", "wh_1") not in fired(arch, '[[alerts.rules]]\nkind = "success_rate"\nmin_deliveries = 14\n')
    assert ("success_rate", "wh_1") not in fired(arch, '[[alerts.rules]]\nkind = "success_rate"\nthreshold = 0.75\n')


def test_window_counts_from_the_rollup_equal_the_raw_rows(arch: Archive) -> None:
    arch.webhook("wh_1")
    arch.deliveries("wh_1", minutes_ago(*range(1, 600, 7), ok=True) + minutes_ago(*range(3, 600, 29), ok=False))
    conn = arch.db(readonly=True)
    try:
        since, until = NOW - timedelta(hours=7, minutes=13), NOW
        counts = window_counts(conn, "wh_1", since, until)
        raw = conn.execute("SELECT COUNT(*), SUM(success = 0) FROM deliveries WHERE delivered_at >= ? AND delivered_at < ?",
                              (format_timestamp(since), format_timestamp(until))).fetchone()
    finally:
        conn.close()
    assert (counts.total, counts.failed) == raw and sum(counts.histogram) == raw[0]


def test_consecutive_failures_needs_the_latest_n_all_failed(arch: Archive) -> None:
    arch.webhook("wh_1")
    arch.deliveries("wh_1", minutes_ago(50, ok=False) + minutes_ago(40, ok=True) + minutes_ago(30, 20, 10, 5, ok=False))
    assert ("consecutive_failures", "wh_1") not in fired(arch)
    assert fired(arch, '[[alerts.rules]]\nkind = "consecutive_failures"\ncount = 4\n')[("consecutive_failures", "wh_1")] \
        == "the latest 4 deliveries all failed (failing since 2026-11-20 11:30 UTC)"  # the streak after the success


def test_latency_p95_above_threshold(arch: Archive) -> None:
    arch.webhook("wh_1")
    arch.deliveries("wh_1", minutes_ago(*range(1, 40), ok=True), duration_ms=12_000)
    assert fired(arch)[("latency_p95", "wh_1")].startswith("95th percentile latency up to 15,000 ms over the last 60 min")
    assert ("latency_p95", "wh_1") not in fired(arch, '[[alerts.rules]]\nkind = "latency_p95"\nthreshold_ms = 15000\n')
    assert p95_ms([0] * 21 + [5]) == 30_001


def test_silence_of_a_webhook_that_usually_has_traffic(arch: Archive) -> None:
    arch.webhook("wh_busy")
    arch.webhook("wh_quiet")
    arch.deliveries("wh_busy", [(NOW - timedelta(minutes=m), True) for m in range(180, 7 * 24 * 60, 15)])  # 4 an hour
    arch.deliveries("wh_quiet", [(NOW - timedelta(hours=h), True) for h in (3, 80)])
    found = fired(arch)
    assert found[("silence", "wh_busy")].startswith("no delivery for 3 h (last 2026-11-20 09:00 UTC); about 8 are usual in 2 h")
    assert ("silence", "wh_quiet") not in found  # two deliveries a week: three quiet hours are normal


def test_webhook_inactive_or_deleted(arch: Archive) -> None:
    arch.webhook("wh_off", active=False)
    arch.webhook("wh_gone")
    conn = arch.db()
    conn.execute("UPDATE webhooks SET deleted_at = ? WHERE id = 'wh_gone'", (format_timestamp(NOW),))
    conn.close()
    found = fired(arch)
    assert found[("webhook_inactive", "wh_off")] == "the webhook is inactive at MoeGo: nothing is delivered to it"
    assert found[("webhook_inactive", "wh_gone")].startswith("MoeGo no longer has this webhook")


def test_unrecovered_failures_about_to_expire(arch: Archive) -> None:
    arch.webhook("wh_1")
    edge = NOW - timedelta(days=15)
    arch.deliveries("wh_1", [(edge + timedelta(hours=10), False), (edge + timedelta(hours=11), False),
                             (edge + timedelta(hours=12), True), (edge + timedelta(hours=60), False)],
                    event_ids=["evt_lost", "evt_saved", "evt_saved", "evt_later"])
    found = fired(arch)
    assert found[("unrecovered_failures", "wh_1")].startswith(
        "1 event failed on every attempt and MoeGo deletes it within 2 d (the oldest in 10 h)")


def test_collector_stale_and_at_risk_read_the_status_model(arch: Archive) -> None:
    arch.webhook("wh_1", synced=NOW - timedelta(hours=2))
    conn = arch.db()
    conn.execute("DELETE FROM coverage")
    conn.close()
    found = fired(arch)
    assert found[("collector_stale", "")].startswith("no successful collector pass for 2 h")
    assert found[("at_risk", "wh_1")].endswith("run 'moego-monitor collect'")


def test_never_succeeded_lookups_read_an_events_attempts_not_every_success_of_its_webhook(arch: Archive) -> None:
    """The unrecovered-failures rule and a bulk redelivery's "later succeeded" check look an event's attempts up by
    the event index. Through the webhook-and-outcome index they read every successful delivery of the webhook once per
    failed row: at MoeGo's full volume that was 100 s of each collector pass (the same answers, see the rule's test
    above and tests/collectors/test_actions.py)."""
    from collectors.alerts.rules import UNRECOVERED_SQL
    from collectors.bulk import LATER_SUCCESS_SQL

    arch.webhook("wh_1")
    conn = arch.db(readonly=True)
    try:
        for sql, params, lookup in ((UNRECOVERED_SQL, (0, 1), "SEARCH s "),
                                    (LATER_SUCCESS_SQL, ("evt", "wh_1", "2026-01-01"), "SEARCH deliveries ")):
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            lookups = [step for step in plan if step.startswith(lookup)]
            assert lookups and all("USING INDEX deliveries_by_event (event_id=?)" in step for step in lookups), plan
    finally:
        conn.close()
