"""The Incidents page and the banner in AppTest, on a seeded archive whose incidents the real rules opened."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

from streamlit.testing.v1 import AppTest

from collectors import archive
from collectors.alerts import run_alerts
from collectors.alerts.incidents import history, list_incidents
from collectors.config import Settings
from collectors.models import format_timestamp

from tests.seed import BETA, GAMMA, Seed
from .test_app import no_exception


def _open_incidents(seed: Seed) -> None:
    with archive.open_archive(seed.path) as conn:
        run_alerts(Settings(db_path=seed.path), conn, now=datetime.now(timezone.utc))


def _incidents(seed: Seed):
    with archive.open_archive(seed.path, readonly=True) as conn:
        return {(i.rule, i.webhook_id): i for i in list_incidents(conn)}


def shown(markdown: str) -> str:
    """What a person reads of escaped Markdown."""
    return re.sub(r"\\(.)", r"\1", markdown)


_BANNER = ":orange-background[:material/notification_important: "


def _banner(at: AppTest) -> list[str]:
    """The banner's text (Markdown inside its coloured span), once per banner shown."""
    return [m.value[len(_BANNER):-1] for m in at.markdown if m.value.startswith(_BANNER)]


def test_no_banner_while_nothing_is_open(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path)
    no_exception(at)
    assert _banner(at) == []


def test_the_banner_shows_on_every_page_while_an_incident_is_open(run_app, live_seed: Seed) -> None:
    _open_incidents(live_seed)
    total = len([i for i in _incidents(live_seed).values() if i.active])
    assert total >= 2
    for page in (None, "views/deliveries.py", "views/webhooks.py", "views/incidents.py"):
        at = run_app(live_seed.path, page=page)
        no_exception(at)
        banner = _banner(at)
        assert len(banner) == 1 and banner[0].startswith(f"**{total} incidents unresolved:**"), (page, banner)
        named = banner[0].split(":** ", 1)[1].split("; ")
        assert len(named) == 4 and named[-1] == "…"  # the newest three, then a sign that there are more
        assert all(" on receiver\\.example/wh\\_" in n for n in named[:3])


def test_the_incidents_page_lists_open_first_and_acknowledges_with_the_persons_name(run_app, live_seed: Seed) -> None:
    _open_incidents(live_seed)
    beta = _incidents(live_seed)[("consecutive_failures", BETA)]
    at = run_app(live_seed.path, page="views/incidents.py")
    no_exception(at)
    assert at.title[0].value == "Incidents"
    headers = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert f"**#{beta.id} · OPEN · consecutive\\_failures on receiver\\.example/wh\\_beta**" in headers
    assert "the latest 5 deliveries all failed" in " ".join(t.value for t in at.text)

    at.text_input(key="incident_actor").set_value("alice").run()
    at.button(key=f"ack_{beta.id}").click().run()
    no_exception(at)
    assert f"Incident #{beta.id} is acknowledged (alice)." in [shown(s.value) for s in at.success]
    assert _incidents(live_seed)[("consecutive_failures", BETA)].state == "acknowledged"
    with archive.open_archive(live_seed.path, readonly=True) as conn:
        assert [(e.action, e.actor) for e in history(conn, beta.id)][-1] == ("acknowledged", "alice")
    headers = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert f"**#{beta.id} · ACKNOWLEDGED · consecutive\\_failures on receiver\\.example/wh\\_beta**" in headers


def test_resolving_moves_an_incident_to_the_history_below(run_app, live_seed: Seed) -> None:
    _open_incidents(live_seed)
    gamma = _incidents(live_seed)[("webhook_inactive", GAMMA)]
    at = run_app(live_seed.path, page="views/incidents.py")
    at.button(key=f"resolve_{gamma.id}").click().run()
    no_exception(at)
    assert _incidents(live_seed)[("webhook_inactive", GAMMA)].resolved_by == "local"  # ui.actor() of a console without login
    subheaders = [s.value for s in at.subheader]
    assert subheaders[0].startswith("Unresolved (") and subheaders[1] == "History (1 resolved)"
    assert any(e.label.startswith(f"#{gamma.id} · webhook\\_inactive on receiver\\.example/wh\\_gamma · resolved")
               for e in at.expander)


def test_the_failed_deliveries_of_an_incident_are_one_link_away(run_app, live_seed: Seed) -> None:
    _open_incidents(live_seed)
    beta = _incidents(live_seed)[("consecutive_failures", BETA)]
    at = run_app(live_seed.path, page="views/incidents.py")
    links = [el for el in at.get("page_link") if el.proto.label == "Failed deliveries of this incident"]
    assert links, "no link to the failed deliveries"
    query = parse_qs(urlparse(links[0].proto.query_string and "?" + links[0].proto.query_string).query)
    assert query["webhook"] == [BETA] and query["outcome"] == ["failed"] and query["range"] == ["custom"]
    assert query["since"] == [beta.failures_since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]


def test_recovery_counts_then_redelivers_an_incidents_failed_events(run_app, fresh_sandbox, tmp_path) -> None:
    """Against a real sandbox: the page counts the incident's failed events, then queues them as a background
    job (the page returns at once); the job redelivers them, audited, and writes its outcome into the history."""
    import dataclasses
    from types import MappingProxyType

    from collectors.client import make_client
    from collectors.collect import collect
    from tests.collectors.conftest import db_rows, sandbox_settings

    from .test_app_actions import wait_for_job

    sandbox = fresh_sandbox
    with make_client(sandbox_settings(sandbox, tmp_path / "unused.db")) as client:
        hook = next(h for h in client.list_webhooks() if h.endpoint_url.endswith("/hooks/orders-sync"))
    config = tmp_path / "alerts.toml"
    config.write_text(f'[alerts]\nbuiltin = false\n[[alerts.rules]]\nkind = "consecutive_failures"\n'
                      f'webhooks = ["{hook.id}"]\n')
    settings = dataclasses.replace(sandbox_settings(sandbox, tmp_path / "archive.db"), config_path=config,
                                   environ=MappingProxyType({}))
    sandbox.generate(hook.id, 6, fail_rate=1.0, spread_seconds=20)
    (incident,) = collect(settings).alerts.changes.opened
    # The incident's failed events: those since its failing streak began. Usually the 6 generated; 5 when one of the
    # sandbox's own (successful) history entries fell among them and the streak starts after it.
    [(n,)] = db_rows(settings.db_path, "SELECT COUNT(DISTINCT event_id) FROM deliveries WHERE webhook_id = ? AND "
                     "success = 0 AND delivered_at >= ?", hook.id, format_timestamp(incident.failures_since))
    assert n in (5, 6)

    at = run_app(settings.db_path, page="views/incidents.py", api_key=sandbox.api_key, base_url=sandbox.base_url)
    at.text_input(key="incident_actor").set_value("dana").run()
    at.button(key=f"count_{incident.id}").click().run()
    no_exception(at)
    assert f"{n} failed events to redeliver, 0 skipped (later succeeded, duplicate, or deleted by MoeGo)." in \
        [t.value for t in at.text]
    at.button(key=f"redeliver_{incident.id}").click().run()
    no_exception(at)
    [message] = [shown(s.value) for s in at.success if shown(s.value).startswith(f"Incident #{incident.id}")]
    assert message.startswith(f"Incident #{incident.id}: {n} failed events queued for redelivery (")
    assert "its progress and Cancel are at the top of every page" in message
    [(job_id, requested_by)] = db_rows(settings.db_path, "SELECT id, requested_by FROM bulk_jobs")
    assert requested_by == "dana"
    assert wait_for_job(settings.db_path, job_id) == "done"  # the dashboard's background worker sent it
    assert db_rows(settings.db_path, "SELECT outcome, new_success, requested_by, batch_id FROM redeliveries") == \
        [("sent", 1, "dana", job_id)] * n
    history = db_rows(settings.db_path, "SELECT action, actor, note FROM incident_events WHERE incident_id = ? "
                      "ORDER BY id DESC LIMIT 2", incident.id)
    assert history == [
        ("redelivered", "dana", f"bulk job {job_id} ended: {n} succeeded, 0 failed, 0 skipped"),
        ("redelivery_queued", "dana", f"{n} failed events queued as bulk job {job_id} (0 skipped)"),
    ]


def test_a_viewer_sees_incidents_but_cannot_change_them(run_app, live_seed: Seed) -> None:
    from .test_auth import OIDC_SECRETS, TEAM, logged_in

    _open_incidents(live_seed)
    beta = _incidents(live_seed)[("consecutive_failures", BETA)]
    at = run_app(live_seed.path, page="views/incidents.py", env=TEAM, secrets=OIDC_SECRETS,
                 user=logged_in("victor@example.com"))
    no_exception(at)
    assert not at.get("text_input") or all(t.key != "incident_actor" for t in at.text_input)  # the login names them
    ack = at.button(key=f"ack_{beta.id}")
    assert ack.disabled and at.button(key=f"resolve_{beta.id}").disabled
    ack.proto.disabled = False  # a client that ignores "disabled" and sends the click anyway
    ack.click().run()
    no_exception(at)
    assert _incidents(live_seed)[("consecutive_failures", BETA)].state == "open"  # dropped, or refused by the page
    assert ("You are signed in as victor@example.com (viewer): only operators may acknowledge, snooze or resolve "
            "incidents.") in [shown(i.value) for i in at.info]
