"""The dashboard's actions end to end: AppTest driving the real sandbox (``python -m sandbox``) over loopback.

Collect now, redeliver one entry (with its confirmation), redeliver a view's failed entries in bulk,
and send a test event; each checked in the archive (audit rows, new attempts) and on screen.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from collectors import archive
from collectors.config import Settings
from collectors.collect import collect
from tests.conftest import SandboxHandle, running_sandbox

from .test_app import metrics, no_exception, read


@pytest.fixture(scope="module")
def moego() -> Iterator[SandboxHandle]:
    """A sandbox of this module's own with one day of history (its clock is nobody else's to move)."""
    with running_sandbox("--history-days", "1") as handle:
        yield handle


@pytest.fixture(scope="module")
def collected(moego: SandboxHandle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive holding everything the sandbox has."""
    path = tmp_path_factory.mktemp("collected") / "archive.db"
    result = collect(Settings(api_key=moego.api_key, base_url=moego.base_url, db_path=path), trigger="collect")
    assert result.ok, result.summary_lines
    return path


def query(path: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def webhook_id(moego: SandboxHandle, label: str) -> str:
    return next(w for w, info in moego.stats()["webhooks"].items() if info["label"] == label)


def test_collect_now_fills_an_empty_archive(run_app, moego: SandboxHandle, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    archive.ensure_db_shape(archive.connect(path))
    at = run_app(path, page="views/archive_health.py", api_key=moego.api_key, base_url=moego.base_url)
    assert any("No coverage recorded yet" in i.value for i in at.info)
    at.button(key="collect_now").click().run()
    no_exception(at)
    [headline] = [s.value for s in at.success if s.value.startswith("Collected:")]
    new = query(path, "SELECT COUNT(*) FROM deliveries")[0][0]
    assert new > 0 and headline == f"Collected: {new:,} new, 0 updated entries."
    assert query(path, "SELECT trigger, outcome FROM collector_runs") == [("dashboard", "ok")]
    assert not any("No coverage recorded yet" in i.value for i in at.info)


def test_redeliver_from_the_detail_view(run_app, moego: SandboxHandle, collected: Path) -> None:
    failing = webhook_id(moego, "legacy-erp")
    [(delivery_id, event_id)] = query(
        collected, "SELECT id, event_id FROM deliveries WHERE webhook_id = ? AND success = 0 ORDER BY delivered_at DESC LIMIT 1",
        failing)
    at = run_app(collected, page="views/deliveries.py", query={"delivery": delivery_id},
                 api_key=moego.api_key, base_url=moego.base_url)
    no_exception(at)
    at.button(key="redeliver").click().run()
    assert any(event_id in w.value for w in at.warning)  # the confirmation names the event
    assert not query(collected, "SELECT 1 FROM redeliveries WHERE delivery_id = ?", delivery_id)  # nothing sent yet
    at.button(key="redeliver_confirm").click().run()
    no_exception(at)
    [(outcome, new_id, by)] = query(collected, "SELECT outcome, new_delivery_id, requested_by FROM redeliveries "
                                              "WHERE delivery_id = ?", delivery_id)
    assert (outcome, by) == ("sent", "local")  # the audit names who: the one local user of a console without login
    assert query(collected, "SELECT event_id FROM deliveries WHERE id = ?", new_id) == [(event_id,)]
    assert read([t.value for t in at.toast][0]).startswith(f"Redelivered {delivery_id}: the new attempt {new_id}")
    assert at.button(key="redeliver").disabled  # the session guard: not again within a minute
    attempts = [a for a in at.dataframe if "link" in a.value.columns and "event_type" not in a.value.columns]
    assert new_id in set(attempts[0].value["id"])  # the new attempt is on the timeline


def test_redeliver_can_be_cancelled(run_app, moego: SandboxHandle, collected: Path) -> None:
    [(delivery_id,)] = query(collected, "SELECT id FROM deliveries WHERE success = 0 ORDER BY delivered_at LIMIT 1")
    at = run_app(collected, page="views/deliveries.py", query={"delivery": delivery_id},
                 api_key=moego.api_key, base_url=moego.base_url)
    at.button(key="redeliver").click().run()
    at.button(key="redeliver_cancel").click().run()
    no_exception(at)
    assert not query(collected, "SELECT 1 FROM redeliveries WHERE delivery_id = ?", delivery_id)
    assert not at.button(key="redeliver").disabled


def test_bulk_redelivery_counts_first_then_sends(run_app, moego: SandboxHandle, collected: Path) -> None:
    flaky = webhook_id(moego, "crm-bridge")
    failed = query(collected, "SELECT COUNT(*) FROM deliveries WHERE webhook_id = ? AND success = 0", flaky)[0][0]
    assert failed > 0
    at = run_app(collected, page="views/deliveries.py", query={"outcome": "failed", "webhook": flaky, "range": "7d"},
                 api_key=moego.api_key, base_url=moego.base_url)
    assert metrics(at)["Deliveries in view"][0] == f"{failed:,}"
    at.button(key="bulk_count").click().run()
    no_exception(at)
    plan = next(m.value for m in at.markdown if "failed entries in this view" in m.value)
    assert plan.startswith(f"**{failed:,}** failed entries in this view")
    assert not query(collected, "SELECT 1 FROM redeliveries WHERE webhook_id = ?", flaky)  # counting sends nothing
    at.button(key="bulk_confirm").click().run()
    no_exception(at)
    rows = query(collected, "SELECT outcome, batch_id, requested_by FROM redeliveries WHERE webhook_id = ?", flaky)
    assert len(rows) == failed and {r[2] for r in rows} == {"local"} and len({r[1] for r in rows}) == 1
    sent = sum(r[0] == "sent" for r in rows)
    skipped = sum(r[0] == "skipped" for r in rows)
    assert sent + skipped == failed and sent > 0
    assert any(read(s.value) == f"Bulk redelivery finished: {sent} sent, 0 failed, {skipped} skipped." for s in at.success)


def test_send_a_test_event(run_app, moego: SandboxHandle, collected: Path) -> None:
    healthy = webhook_id(moego, "orders-sync")
    at = run_app(collected, page="views/webhooks.py", api_key=moego.api_key, base_url=moego.base_url)
    at.selectbox(key="test_webhook").set_value(healthy)
    at.selectbox(key="test_event_type").set_value("PET_CREATED")
    at.button(key="send_test").click().run()
    no_exception(at)
    [message] = [s.value for s in at.success if s.value.startswith("Test event sent")]
    assert read(message).startswith(f"Test event sent to {healthy}: the endpoint answered with HTTP 200")
    stored = query(collected, "SELECT event_type, success FROM deliveries WHERE webhook_id = ? AND event_type = 'PET_CREATED' "
                              "ORDER BY delivered_at DESC LIMIT 1", healthy)
    assert stored == [("PET_CREATED", 1)]


def test_every_action_names_the_operator_who_did_it(run_app, moego: SandboxHandle, collected: Path) -> None:
    """Logged in with OpenID Connect as an operator: the redelivery, the test event and the collection are audited
    under the operator's e-mail."""
    from .test_auth import OIDC_SECRETS, TEAM, logged_in

    login = dict(env=TEAM, secrets=OIDC_SECRETS, user=logged_in("Olivia@Example.com"), api_key=moego.api_key,
                 base_url=moego.base_url)
    failing = webhook_id(moego, "legacy-erp")
    [(delivery_id,)] = query(collected, "SELECT id FROM deliveries WHERE webhook_id = ? AND success = 0 AND id NOT IN "
                                        "(SELECT delivery_id FROM redeliveries) ORDER BY delivered_at DESC LIMIT 1", failing)
    at = run_app(collected, page="views/deliveries.py", query={"delivery": delivery_id}, **login)
    at.button(key="redeliver").click().run()
    at.button(key="redeliver_confirm").click().run()
    no_exception(at)
    assert query(collected, "SELECT requested_by FROM redeliveries WHERE delivery_id = ?", delivery_id) == [
        ("olivia@example.com",)]

    hooks = run_app(collected, page="views/webhooks.py", **login)
    hooks.selectbox(key="test_webhook").set_value(webhook_id(moego, "orders-sync"))
    hooks.button(key="send_test").click().run()
    no_exception(hooks)
    [(outcome, delivery, by)] = query(collected, "SELECT outcome, delivery_id, requested_by FROM test_events ORDER BY id DESC LIMIT 1")
    assert (outcome, by) == ("sent", "olivia@example.com")
    assert query(collected, "SELECT COUNT(*) FROM deliveries WHERE id = ?", delivery) == [(1,)]

    health = run_app(collected, page="views/archive_health.py", **login)
    health.button(key="collect_now").click().run()
    no_exception(health)
    assert query(collected, "SELECT trigger, requested_by FROM collector_runs ORDER BY id DESC LIMIT 1") == [
        ("dashboard", "olivia@example.com")]
