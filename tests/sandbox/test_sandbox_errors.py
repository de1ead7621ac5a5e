"""Auth, routing and request errors: status codes and gRPC error bodies."""

from __future__ import annotations

import httpx

from tests.conftest import SandboxHandle
from tests.sandbox.conftest import seeded


def _error(r: httpx.Response, status: int, code: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code and body["details"] == []


def test_missing_or_wrong_key_is_unauthenticated(sandbox: SandboxHandle) -> None:
    for key in ("", "wrong-key"):
        with sandbox.client(key) as c:
            _error(c.post("/v1/webhooks:list", json={"pagination": {"pageSize": 1}}), 401, 16)
            _error(c.get("/v1/webhooks/whk_anything"), 401, 16)
    with httpx.Client(base_url=sandbox.base_url, trust_env=False) as c:
        _error(c.get("/v1/webhooks/x", headers={"Authorization": "Bearer " + sandbox.api_key}), 401, 16)
        _error(c.get("/v1/webhooks/x", headers={"Authorization": "Basic !!!not-base64"}), 401, 16)


def test_readonly_key_reads_but_cannot_write(sandbox: SandboxHandle, api: httpx.Client) -> None:
    orders = seeded(api, "orders-sync")
    with sandbox.client(sandbox.api_key + "-readonly") as ro:
        assert ro.get(f"/v1/webhooks/{orders['id']}").status_code == 200
        r = ro.post(
            "/v1/webhook/deliveries:list", json={"pagination": {"pageSize": 1}, "webhookId": orders["id"]}
        )
        assert r.status_code == 200
        delivery = r.json()["deliveries"][0]
        assert ro.get(f"/v1/webhook/deliveries/{delivery['id']}").status_code == 200
        _error(
            ro.post(
                "/v1/webhooks", json={"endpointUrl": "https://x.example/h", "eventTypes": ["HEALTH_CHECK"]}
            ),
            403,
            7,
        )
        _error(ro.put(f"/v1/webhooks/{orders['id']}", json={"isActive": False}), 403, 7)
        _error(ro.delete(f"/v1/webhooks/{orders['id']}"), 403, 7)
        _error(ro.post(f"/v1/webhooks/{orders['id']}/test", json={}), 403, 7)
        _error(
            ro.post(
                f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", params={"webhookId": orders["id"]}
            ),
            403,
            7,
        )
    assert api.get(f"/v1/webhooks/{orders['id']}").json() == orders


def test_unknown_paths_ids_and_methods(api: httpx.Client) -> None:
    _error(api.get("/v1/nothing"), 404, 5)
    _error(api.get("/v2/webhooks"), 404, 5)
    _error(api.get("/v1/webhooks/whk_doesnotexist"), 404, 5)
    _error(api.get("/v1/webhook/deliveries/dlv_0000000000000001"), 404, 5)
    _error(api.get("/v1/webhook/deliveries/garbage"), 404, 5)
    _error(
        api.post(
            "/v1/webhook/deliveries:list",
            json={"pagination": {"pageSize": 5}, "webhookId": "whk_doesnotexist"},
        ),
        404,
        5,
    )
    _error(api.post("/v1/webhooks/whk_doesnotexist/test", json={}), 404, 5)
    r = api.get("/v1/webhooks:list")
    assert r.status_code == 501 and r.json()["code"] == 12


def test_malformed_bodies_are_invalid_argument(api: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    _error(api.post("/v1/webhooks:list", content=b"{not json", headers=headers), 400, 3)
    _error(api.post("/v1/webhooks:list", content=b"[1, 2]", headers=headers), 400, 3)
    _error(api.post("/v1/webhook/deliveries:list", content=b'{"pagination": ', headers=headers), 400, 3)
    _error(api.post("/v1/webhooks", content=b"\xff\xfe", headers=headers), 400, 3)


def test_pagination_arguments(api: httpx.Client) -> None:
    orders = seeded(api, "orders-sync")
    base = {"webhookId": orders["id"]}
    for pagination in ({"pageSize": 0}, {"pageSize": 501}, {"pageSize": -1}, {}, {"pageSize": "ten"}):
        _error(api.post("/v1/webhook/deliveries:list", json={**base, "pagination": pagination}), 400, 3)
        _error(api.post("/v1/webhooks:list", json={"pagination": pagination}), 400, 3)
    _error(api.post("/v1/webhook/deliveries:list", json=base), 400, 3)  # pagination missing
    _error(api.post("/v1/webhooks:list", json={}), 400, 3)
    _error(
        api.post("/v1/webhook/deliveries:list", json={"pagination": {"pageSize": 5}}), 400, 3
    )  # webhookId missing
    for size in (1, 500):
        r = api.post("/v1/webhook/deliveries:list", json={**base, "pagination": {"pageSize": size}})
        assert r.status_code == 200 and len(r.json()["deliveries"]) == size
    for token in ("garbage", "eyJ2IjoxfQ", "!!!", "e30"):
        _error(
            api.post(
                "/v1/webhook/deliveries:list",
                json={**base, "pagination": {"pageSize": 5, "pageToken": token}},
            ),
            400,
            3,
        )
    first = api.post("/v1/webhook/deliveries:list", json={**base, "pagination": {"pageSize": 5}}).json()
    token = first["nextPageToken"]
    # the token of one request used with another filter, or another webhook
    _error(
        api.post(
            "/v1/webhook/deliveries:list",
            json={**base, "pagination": {"pageSize": 5, "pageToken": token}, "filter": {"success": True}},
        ),
        400,
        3,
    )
    crm = seeded(api, "crm-bridge")
    _error(
        api.post(
            "/v1/webhook/deliveries:list",
            json={"webhookId": crm["id"], "pagination": {"pageSize": 5, "pageToken": token}},
        ),
        400,
        3,
    )
    webhooks_token = api.post("/v1/webhooks:list", json={"pagination": {"pageSize": 1}}).json()[
        "nextPageToken"
    ]
    _error(
        api.post(
            "/v1/webhook/deliveries:list",
            json={**base, "pagination": {"pageSize": 5, "pageToken": webhooks_token}},
        ),
        400,
        3,
    )
    # the page size may change between pages
    r = api.post(
        "/v1/webhook/deliveries:list", json={**base, "pagination": {"pageSize": 7, "pageToken": token}}
    )
    assert r.status_code == 200 and len(r.json()["deliveries"]) == 7


def test_filter_type_errors(api: httpx.Client) -> None:
    orders = seeded(api, "orders-sync")
    base = {"webhookId": orders["id"], "pagination": {"pageSize": 5}}
    for filt in (
        {"success": "false"},
        {"eventTypes": ["NOPE"]},
        {"eventTypes": "APPOINTMENT_CREATED"},
        {"deliveryTime": {"startTime": "yesterday"}},
        {"deliveryTime": {"endTime": 12}},
        {"deliveryTime": "2025-01-01T00:00:00Z"},
    ):
        _error(api.post("/v1/webhook/deliveries:list", json={**base, "filter": filt}), 400, 3)
