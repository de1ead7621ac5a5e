"""Delivery log reads: JSON shape, Get, filters, keyset pagination, retention floor, determinism."""

from __future__ import annotations

import base64
import json
import time

import httpx

from tests.conftest import SandboxHandle, event_object, start_sandbox, stop_sandbox
from tests.sandbox.conftest import b64decode, list_all, rfc3339, seeded, ts_ns

DAY_NS = 86_400 * 1_000_000_000
DEFAULTS = (False, 0, "", [], {})


def _page(api: httpx.Client, webhook_id: str, size: int = 500, **filt: object) -> dict:
    body: dict = {"pagination": {"pageSize": size}, "webhookId": webhook_id}
    if filt:
        body["filter"] = filt
    r = api.post("/v1/webhook/deliveries:list", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_delivery_json_shape(api: httpx.Client) -> None:
    legacy = seeded(api, "legacy-erp")
    deliveries = _page(api, legacy["id"])["deliveries"]
    assert len(deliveries) == 500
    saw_failure = saw_success = False
    for d in deliveries:
        assert d["id"].startswith("dlv_") and d["webhookId"] == legacy["id"]
        for key, value in d.items():
            assert value not in DEFAULTS or value is True, f"default value of {key} not omitted"
        if "durationMs" in d:
            assert isinstance(d["durationMs"], str) and int(d["durationMs"]) > 0
        body = b64decode(d["requestBody"])
        event = json.loads(body)
        field, _ = event_object(body)
        assert set(event) == {"id", "type", "timestamp", "companyId", field}
        assert event["type"] == d["eventType"] and event["id"] == d["eventId"]
        headers = d["requestHeaders"]
        assert headers["User-Agent"] == {"values": ["Moego/Webhook-1.0"]}
        assert headers["X-Moe-Delivery-ID"] == {"values": [d["id"]]}
        assert headers["X-Moe-Webhook-ID"] == {"values": [legacy["id"]]}
        assert headers["X-Moe-Event-Type"] == {"values": [d["eventType"]]}
        assert "X-Moe-Signature-256" in headers and "X-Moe-Signature" in headers
        assert d["requestUrl"] == legacy["endpointUrl"] and d["requestFormat"] == "CONTENT_TYPE_JSON"
        ts_ns(d["deliveredAt"])
        if d.get("success"):
            saw_success = True
            assert 200 <= d["responseStatus"] < 300 and "error" not in d
        else:
            saw_failure = True
            assert d["error"]
            if "responseStatus" in d:
                assert d["error"] == f"unexpected status {d['responseStatus']}"
            else:
                assert "responseBody" not in d and "responseHeaders" not in d
        if "responseBody" in d:
            assert len(b64decode(d["responseBody"])) <= 4096
    assert saw_failure and saw_success
    errors = {d["error"].split(":")[0] for d in deliveries if "error" in d}
    assert any(e.startswith("unexpected status") for e in errors)
    assert "context deadline exceeded (Client.Timeout exceeded while awaiting headers)" in {
        d.get("error") for d in deliveries
    }
    assert any(d.get("error", "").endswith("connect: connection refused") for d in deliveries)
    assert any(d.get("retryCount") == 3 for d in deliveries)


def test_get_delivery_matches_the_list(api: httpx.Client) -> None:
    crm = seeded(api, "crm-bridge")
    for d in _page(api, crm["id"], 20)["deliveries"]:
        r = api.get(f"/v1/webhook/deliveries/{d['id']}")
        assert r.status_code == 200 and r.json() == d


def test_unsigned_webhook_has_no_signature_headers(api: httpx.Client) -> None:
    pets = seeded(api, "pet-profile-feed")
    for d in _page(api, pets["id"], 50)["deliveries"]:
        assert not any(h.startswith("X-Moe-Signature") for h in d["requestHeaders"])
        assert "Authorization" not in d["requestHeaders"]
    orders = seeded(api, "orders-sync")
    d = _page(api, orders["id"], 1)["deliveries"][0]
    assert d["requestHeaders"]["Authorization"] == orders["headers"]["Authorization"]


def test_success_filter_uses_presence(api: httpx.Client) -> None:
    legacy = seeded(api, "legacy-erp")
    both = list_all(api, legacy["id"])
    failed = list_all(api, legacy["id"], filter={"success": False})
    succeeded = list_all(api, legacy["id"], filter={"success": True})
    assert failed and succeeded
    assert all("success" not in d for d in failed) and all(d["success"] is True for d in succeeded)
    assert len(failed) + len(succeeded) == len(both)
    assert {d["id"] for d in failed} | {d["id"] for d in succeeded} == {d["id"] for d in both}


def test_event_type_and_time_filters(api: httpx.Client) -> None:
    orders = seeded(api, "orders-sync")
    types = ["APPOINTMENT_CANCELED", "APPOINTMENT_DELETED"]
    picked = list_all(api, orders["id"], filter={"eventTypes": types})
    assert picked and {d["eventType"] for d in picked} <= set(types)
    everything = list_all(api, orders["id"])
    assert len(picked) == sum(1 for d in everything if d["eventType"] in types)
    assert len({d["eventType"] for d in everything}) >= 5  # several event types

    times = sorted(ts_ns(d["deliveredAt"]) for d in everything)
    start, end = times[100], times[300]
    window = list_all(
        api, orders["id"], filter={"deliveryTime": {"startTime": rfc3339(start), "endTime": rfc3339(end)}}
    )
    got = sorted(ts_ns(d["deliveredAt"]) for d in window)
    assert got[0] == start and got[-1] < end  # start inclusive, end exclusive
    assert got == [t for t in times if start <= t < end]
    only_start = list_all(api, orders["id"], filter={"deliveryTime": {"startTime": rfc3339(times[-5])}})
    assert len(only_start) == 5
    only_end = list_all(api, orders["id"], filter={"deliveryTime": {"endTime": rfc3339(times[4])}})
    assert len(only_end) == 4
    # other offsets are accepted too
    sec = start // 1_000_000_000
    shifted = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec + 2 * 3600)) + "+02:00"
    assert _page(api, orders["id"], 5, deliveryTime={"startTime": shifted})["deliveries"]


def test_history_has_a_daily_rhythm_and_retention_floor(sandbox: SandboxHandle, api: httpx.Client) -> None:
    now = ts_ns(sandbox.health()["now"])
    pets = seeded(api, "pet-profile-feed")
    everything = list_all(api, pets["id"])
    assert 3000 < len(everything) < 10_000
    times = [ts_ns(d["deliveredAt"]) for d in everything]
    assert min(times) >= now - 15 * DAY_NS and max(times) <= now
    assert max(times) - min(times) > 14 * DAY_NS
    by_hour = [0] * 24
    for t in times:
        by_hour[(t // 3_600_000_000_000 - 7) % 24] += 1  # US Pacific (UTC-7)
    assert sum(by_hour[9:17]) > 3 * sum(by_hour[0:8])
    archive = seeded(api, "analytics-archive")
    newest = ts_ns(_page(api, archive["id"], 1)["deliveries"][0]["deliveredAt"])
    assert now - newest > 5 * DAY_NS - 60 * 1_000_000_000  # inactive: nothing in the last ~5 days


def test_pages_have_no_gaps_or_duplicates_while_entries_arrive(
    sandbox: SandboxHandle, api: httpx.Client, make_webhook
) -> None:
    webhook = make_webhook("ok")
    assert sandbox.generate(webhook["id"], 1234, 0.2, spread_seconds=3600)["generated"] == 1234
    seen: list[dict] = []
    token = ""
    pages = 0
    while True:
        pagination = {"pageSize": 100, **({"pageToken": token} if token else {})}
        r = api.post(
            "/v1/webhook/deliveries:list", json={"pagination": pagination, "webhookId": webhook["id"]}
        )
        assert r.status_code == 200, r.text
        data = r.json()
        seen.extend(data.get("deliveries", []))
        pages += 1
        sandbox.generate(webhook["id"], 7, spread_seconds=0)  # new entries arrive between pages
        api.post(f"/v1/webhooks/{webhook['id']}/test", json={})  # and a real one
        token = data.get("nextPageToken", "")
        if not token:
            break
    ids = [d["id"] for d in seen]
    assert pages == 13 and len(ids) == 1234 and len(set(ids)) == 1234
    keys = [(ts_ns(d["deliveredAt"]), d["id"]) for d in seen]
    assert keys == sorted(keys, reverse=True)
    assert len(list_all(api, webhook["id"])) == 1234 + 13 * 8
    failed = list_all(api, webhook["id"], page_size=37, filter={"success": False})
    assert 150 < len(failed) < 350 and len({d["id"] for d in failed}) == len(failed)


def test_ties_in_delivered_at_are_ordered_by_id(
    sandbox: SandboxHandle, api: httpx.Client, make_webhook
) -> None:
    webhook = make_webhook("ok")
    sandbox.generate(webhook["id"], 25, spread_seconds=0)
    seen = list_all(api, webhook["id"], page_size=4)
    assert len(seen) == 25 and len({d["deliveredAt"] for d in seen}) == 1
    assert [d["id"] for d in seen] == sorted((d["id"] for d in seen), reverse=True)


def test_same_seed_same_ids(sandbox: SandboxHandle, api: httpx.Client) -> None:
    other = start_sandbox()
    try:
        with other.client() as c:
            mine = api.post("/v1/webhooks:list", json={"pagination": {"pageSize": 100}}).json()["webhooks"]
            theirs = c.post("/v1/webhooks:list", json={"pagination": {"pageSize": 100}}).json()["webhooks"]
            seeded_ids = {w["id"] for w in theirs}
            assert {w["id"] for w in mine if w["id"] in seeded_ids} == seeded_ids and len(seeded_ids) == 5
            archive = seeded(api, "analytics-archive")["id"]
            a = {d["id"] for d in list_all(api, archive)}
            b = {d["id"] for d in list_all(c, archive)}
            assert len(a & b) >= 0.99 * max(len(a), len(b))
            some = sorted(a & b)[:3]
            for delivery_id in some:
                x, y = (
                    api.get(f"/v1/webhook/deliveries/{delivery_id}").json(),
                    c.get(f"/v1/webhook/deliveries/{delivery_id}").json(),
                )
                assert (x["eventId"], x["eventType"], x.get("success"), x.get("retryCount")) == (
                    y["eventId"],
                    y["eventType"],
                    y.get("success"),
                    y.get("retryCount"),
                )
                assert (
                    base64.b64decode(x["requestBody"]) == base64.b64decode(y["requestBody"])
                    or x["deliveredAt"] != y["deliveredAt"]
                )
    finally:
        stop_sandbox(other)
