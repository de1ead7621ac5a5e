"""Webhook endpoints: CRUD, JSON shape (defaults omitted), validation, limits, listing."""

from __future__ import annotations

import httpx

from tests.conftest import SandboxHandle
from tests.sandbox.conftest import seeded, ts_ns

LABELS = ["orders-sync", "crm-bridge", "legacy-erp", "pet-profile-feed", "analytics-archive"]


def _error(r: httpx.Response, status: int, code: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert (
        body["code"] == code
        and body["details"] == []
        and isinstance(body["message"], str)
        and body["message"]
    )
    return body


def test_seeded_webhooks_have_the_contract_shape(api: httpx.Client) -> None:
    r = api.post("/v1/webhooks:list", json={"pagination": {"pageSize": 50}})
    assert r.status_code == 200
    webhooks = r.json()["webhooks"]
    assert sorted(w["endpointUrl"].rsplit("/", 1)[1] for w in webhooks) == sorted(LABELS)
    for w in webhooks:
        assert w["id"].startswith("whk_") and len(w["id"]) == 16
        assert w["contentType"] == "CONTENT_TYPE_JSON"
        assert w["retryPolicy"]["maxRetries"] == 3
        assert w["organizations"][0]["type"] == "COMPANY" and w["organizations"][0]["id"]
        assert ts_ns(w["createdTime"]) <= ts_ns(w["updatedTime"])
        assert "verifySsl" not in w  # false: omitted
    orders = seeded(api, "orders-sync")
    assert orders["isActive"] is True and orders["secretToken"].startswith("whsec_")
    assert orders["headers"]["Authorization"]["values"][0].startswith("Bearer demo-partner-token-")
    pets = seeded(api, "pet-profile-feed")
    assert "secretToken" not in pets and "headers" not in pets
    archive = seeded(api, "analytics-archive")
    assert "isActive" not in archive  # inactive: false is the default, so omitted


def test_create_get_update_delete(sandbox: SandboxHandle, api: httpx.Client) -> None:
    body = {
        "endpointUrl": f"{sandbox.receiver_url}/hooks/ok?crud=1",
        "eventTypes": ["HEALTH_CHECK", "PET_CREATED"],
        "secretToken": "s3cret",
        "isActive": True,
        "verifySsl": True,
        "headers": {"X-Partner": {"values": ["a", "b"]}},
    }
    r = api.post("/v1/webhooks", json=body)
    assert r.status_code == 200, r.text
    created = r.json()
    try:
        assert created["endpointUrl"] == body["endpointUrl"]
        assert created["eventTypes"] == body["eventTypes"]
        assert created["secretToken"] == "s3cret" and created["verifySsl"] is True
        assert created["headers"] == {"X-Partner": {"values": ["a", "b"]}}
        assert created["retryPolicy"] == {
            "maxRetries": 3,
            "initialIntervalMs": 2000,
            "backoffFactor": 2,
            "retryableHttpCodes": [408, 429, 500, 502, 503, 504],
        }
        assert api.get(f"/v1/webhooks/{created['id']}").json() == created

        r = api.put(f"/v1/webhooks/{created['id']}", json={"isActive": False, "eventTypes": ["PET_UPDATED"]})
        assert r.status_code == 200, r.text
        updated = r.json()
        assert "isActive" not in updated and updated["eventTypes"] == ["PET_UPDATED"]
        assert updated["secretToken"] == "s3cret"  # untouched fields stay
        assert updated["createdTime"] == created["createdTime"]
        assert ts_ns(updated["updatedTime"]) > ts_ns(created["updatedTime"])
    finally:
        r = api.delete(f"/v1/webhooks/{created['id']}")
    assert r.status_code == 200 and r.json() == {}
    _error(api.get(f"/v1/webhooks/{created['id']}"), 404, 5)
    _error(api.delete(f"/v1/webhooks/{created['id']}"), 404, 5)
    _error(api.put(f"/v1/webhooks/{created['id']}", json={"isActive": True}), 404, 5)


def test_create_validation(sandbox: SandboxHandle, api: httpx.Client) -> None:
    ok_url = f"{sandbox.receiver_url}/hooks/ok?validation=1"
    cases = [
        {"eventTypes": ["HEALTH_CHECK"]},  # no endpointUrl
        {"endpointUrl": "http://example.com/hook", "eventTypes": ["HEALTH_CHECK"]},  # not https
        {"endpointUrl": "ftp://example.com/hook", "eventTypes": ["HEALTH_CHECK"]},
        {"endpointUrl": "not a url", "eventTypes": ["HEALTH_CHECK"]},
        {"endpointUrl": ok_url},  # no eventTypes
        {"endpointUrl": ok_url, "eventTypes": []},
        {"endpointUrl": ok_url, "eventTypes": ["NOT_A_TYPE"]},
        {"endpointUrl": ok_url, "eventTypes": "HEALTH_CHECK"},  # wrong JSON type
        {"endpointUrl": ok_url, "eventTypes": ["HEALTH_CHECK"], "retryPolicy": {"maxRetries": 9}},
        {"endpointUrl": ok_url, "eventTypes": ["HEALTH_CHECK"], "isActive": "yes"},
    ]
    for body in cases:
        _error(api.post("/v1/webhooks", json=body), 400, 3)
    for url in (
        "https://example.com/hook",
        "http://localhost:9/x",
        "http://127.0.0.2:9/x",
        "http://[::1]:9/x",
    ):
        r = api.post("/v1/webhooks", json={"endpointUrl": url, "eventTypes": ["HEALTH_CHECK"]})
        assert r.status_code == 200, (url, r.text)
        assert r.json()["isActive"] is True  # left out: defaults to active
        api.delete(f"/v1/webhooks/{r.json()['id']}")


def test_duplicate_endpoint_is_already_exists(api: httpx.Client) -> None:
    orders = seeded(api, "orders-sync")
    _error(
        api.post("/v1/webhooks", json={"endpointUrl": orders["endpointUrl"], "eventTypes": ["HEALTH_CHECK"]}),
        409,
        6,
    )
    crm = seeded(api, "crm-bridge")
    _error(api.put(f"/v1/webhooks/{crm['id']}", json={"endpointUrl": orders["endpointUrl"]}), 409, 6)


def test_eleventh_webhook_is_resource_exhausted(sandbox: SandboxHandle, api: httpx.Client) -> None:
    existing = len(api.post("/v1/webhooks:list", json={"pagination": {"pageSize": 100}}).json()["webhooks"])
    created = []
    try:
        for i in range(10 - existing):
            r = api.post(
                "/v1/webhooks",
                json={
                    "endpointUrl": f"{sandbox.receiver_url}/hooks/ok?max={i}",
                    "eventTypes": ["HEALTH_CHECK"],
                },
            )
            assert r.status_code == 200, r.text
            created.append(r.json()["id"])
        r = api.post(
            "/v1/webhooks",
            json={"endpointUrl": f"{sandbox.receiver_url}/hooks/ok?max=11", "eventTypes": ["HEALTH_CHECK"]},
        )
        _error(r, 429, 8)
    finally:
        for webhook_id in created:
            api.delete(f"/v1/webhooks/{webhook_id}")


def test_list_webhooks_filters_and_pages(api: httpx.Client) -> None:
    def ids(body: dict) -> list[str]:
        r = api.post("/v1/webhooks:list", json=body)
        assert r.status_code == 200, r.text
        return [w["id"] for w in r.json().get("webhooks", [])]

    everything = ids({"pagination": {"pageSize": 100}})
    archive, pets = seeded(api, "analytics-archive"), seeded(api, "pet-profile-feed")
    assert ids({"pagination": {"pageSize": 100}, "filter": {"isActive": False}}) == [archive["id"]]
    assert archive["id"] not in ids({"pagination": {"pageSize": 100}, "filter": {"isActive": True}})
    assert sorted(
        ids({"pagination": {"pageSize": 100}, "filter": {"eventTypes": ["PET_DELETED"]}})
    ) == sorted([archive["id"], pets["id"]])
    created = ids(
        {
            "pagination": {"pageSize": 100},
            "filter": {"createdTime": {"startTime": archive["createdTime"], "endTime": pets["createdTime"]}},
        }
    )
    assert archive["id"] in created and pets["id"] not in created  # start inclusive, end exclusive
    # one by one, with tokens: the same list, newest first
    seen, token = [], ""
    while True:
        body = {"pagination": {"pageSize": 1, **({"pageToken": token} if token else {})}}
        r = api.post("/v1/webhooks:list", json=body).json()
        seen += [w["id"] for w in r.get("webhooks", [])]
        token = r.get("nextPageToken", "")
        if not token:
            break
    assert seen == everything
