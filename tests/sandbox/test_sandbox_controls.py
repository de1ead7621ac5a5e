"""Sandbox-only controls: faults, clock and retention, live traffic, stats, clean shutdown."""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime

import httpx

from tests.conftest import SandboxHandle, start_sandbox, stop_sandbox
from tests.sandbox.conftest import list_all, seeded, ts_ns

DAY_S = 86_400


def test_injected_errors(sandbox: SandboxHandle, api: httpx.Client) -> None:
    orders = seeded(api, "orders-sync")
    sandbox.faults(503, count=2, retry_after=3)
    for _ in range(2):
        r = api.get(f"/v1/webhooks/{orders['id']}")
        assert r.status_code == 503 and r.json() == {
            "code": 14,
            "message": r.json()["message"],
            "details": [],
        }
        assert r.headers["Retry-After"] == "3"
    assert api.get(f"/v1/webhooks/{orders['id']}").status_code == 200

    sandbox.faults(429, count=1, paths="/v1/webhook/deliveries")
    assert api.get(f"/v1/webhooks/{orders['id']}").status_code == 200  # other paths untouched
    body = {"pagination": {"pageSize": 3}, "webhookId": orders["id"]}
    r = api.post("/v1/webhook/deliveries:list", json=body)
    assert r.status_code == 429 and r.json()["code"] == 8 and "Retry-After" not in r.headers
    assert api.post("/v1/webhook/deliveries:list", json=body).status_code == 200

    sandbox.faults(500, count=1)
    r = api.post("/v1/webhooks:list", json={"pagination": {"pageSize": 1}})
    assert r.status_code == 500 and r.json()["code"] == 13
    sandbox.faults(503, count=5)
    sandbox.clear_faults()
    assert api.get(f"/v1/webhooks/{orders['id']}").status_code == 200


def test_injected_malformed_bodies(sandbox: SandboxHandle, api: httpx.Client) -> None:
    orders = seeded(api, "orders-sync")
    body = {"pagination": {"pageSize": 3}, "webhookId": orders["id"]}
    sandbox.faults(malformed=1)
    assert api.get(f"/v1/webhooks/{orders['id']}").status_code == 200  # only list calls
    r = api.post("/v1/webhook/deliveries:list", json=body)
    assert r.status_code == 200
    try:
        json.loads(r.content)
        raise AssertionError("expected a body that is not JSON")
    except ValueError:
        pass
    sandbox.faults(malformed=1, kind="wrong_types")
    data = api.post("/v1/webhook/deliveries:list", json=body).json()
    assert not isinstance(data["nextPageToken"], str) and not isinstance(data["deliveries"][0]["id"], str)
    assert "deliveries" in api.post("/v1/webhook/deliveries:list", json=body).json()
    r = httpx.post(f"{sandbox.base_url}/_sandbox/faults", json={"status": 418}, trust_env=False)
    assert r.status_code == 400


def test_generate_and_stats(sandbox: SandboxHandle, api: httpx.Client, make_webhook) -> None:
    webhook = make_webhook("ok")
    assert sandbox.generate(webhook["id"], 300, 1.0, event_type="APPOINTMENT_CREATED")["generated"] == 300
    deliveries = list_all(api, webhook["id"])
    assert len(deliveries) == 300 and all("success" not in d and d["error"] for d in deliveries)
    assert {d["eventType"] for d in deliveries} == {"APPOINTMENT_CREATED"}
    stats = sandbox.stats()
    assert stats["webhooks"][webhook["id"]]["deliveries"] == 300
    assert stats["webhooks"][webhook["id"]]["failed"] == 300
    assert stats["deliveries"] > 20_000 and stats["totalPushes"] >= 0
    r = httpx.post(
        f"{sandbox.base_url}/_sandbox/generate", json={"webhookId": "whk_nope", "count": 1}, trust_env=False
    )
    assert r.status_code == 404


def test_clock_advance_drives_retention(fresh_sandbox: SandboxHandle) -> None:
    sandbox = fresh_sandbox
    with sandbox.client() as api:
        crm = seeded(api, "crm-bridge")
        before = list_all(api, crm["id"])
        oldest = before[-1]
        sandbox.advance_clock(DAY_S)
        now = ts_ns(sandbox.health()["now"])
        after = list_all(api, crm["id"])
        assert 0 < len(after) < len(before)
        assert min(ts_ns(d["deliveredAt"]) for d in after) >= now - 15 * DAY_S * 1_000_000_000
        assert api.get(f"/v1/webhook/deliveries/{oldest['id']}").status_code == 404

        sandbox.advance_clock(15 * DAY_S)  # 16 days in all: everything seeded is gone
        assert list_all(api, crm["id"]) == []
        r = api.post(
            "/v1/webhook/deliveries:list", json={"pagination": {"pageSize": 10}, "webhookId": crm["id"]}
        )
        assert r.json() == {}  # no deliveries, no token: every field is a default
        assert sandbox.stats()["deliveries"] == 0

        # new deliveries follow the new clock
        d = api.post(f"/v1/webhooks/{crm['id']}/test", json={}).json()
        assert abs(ts_ns(d["deliveredAt"]) - ts_ns(sandbox.health()["now"])) < 60 * 1_000_000_000
        assert [x["id"] for x in list_all(api, crm["id"])] == [d["id"]]

        # and so does the Date header of every answer, as MoeGo's follows its own clock
        answer = api.get(f"/v1/webhooks/{crm['id']}")
        dated = parsedate_to_datetime(answer.headers["Date"]).timestamp() * 1_000_000_000
        assert answer.headers.get_list("Date") == [answer.headers["Date"]]
        assert abs(dated - ts_ns(sandbox.health()["now"])) < 3 * 1_000_000_000
        assert dated - time.time_ns() > 15 * DAY_S * 1_000_000_000


def test_live_traffic_pause_and_clean_shutdown() -> None:
    sandbox = start_sandbox("--rate", "1200")  # 20 events a second
    try:
        deadline = time.monotonic() + 10
        while sandbox.stats()["received"] < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = sandbox.stats()
        assert stats["received"] >= 10 and stats["totalPushes"] >= 10
        active = {w for w, s in stats["webhooks"].items() if s["isActive"]}
        inactive = {w for w, s in stats["webhooks"].items() if not s["isActive"]}
        assert all(stats["webhooks"][w]["pushes"] == 0 for w in inactive)
        assert sum(stats["webhooks"][w]["pushes"] for w in active) == stats["totalPushes"]
        with sandbox.client() as api:
            pets = seeded(api, "pet-profile-feed")
            time.sleep(0.5)
            newest = api.post(
                "/v1/webhook/deliveries:list", json={"pagination": {"pageSize": 1}, "webhookId": pets["id"]}
            ).json()
            assert "X-Moe-Signature" not in newest["deliveries"][0]["requestHeaders"]
        sandbox.pause_traffic(True)
        time.sleep(0.3)
        generated = sandbox.stats()["generated"]
        time.sleep(0.7)
        assert sandbox.stats()["generated"] == generated
        sandbox.pause_traffic(False)
    finally:
        code, stderr = stop_sandbox(sandbox)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr


def test_loopback_only_and_health(sandbox: SandboxHandle) -> None:
    health = sandbox.health()
    assert health["status"] == "ok" and health["receiverUrl"].startswith("http://127.0.0.1:")
    assert health["volume"] == "demo" and health["seed"] == 7
