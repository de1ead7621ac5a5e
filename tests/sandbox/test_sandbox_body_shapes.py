"""``--body-shape``: the same seeded events in the guide's shape, as MoeGo's proto oneof in proto3 JSON, and
as that oneof in base64; signatures over the exact bytes; a test event's payload sent as given."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.server import SandboxError, SandboxOptions
from tests.conftest import REPO, SandboxHandle, start_sandbox, stop_sandbox
from tests.sandbox.conftest import b64decode, list_all

ENVELOPE = {"id", "type", "timestamp", "companyId"}
FIELD_OF = {"HEALTH": "healthCheck", "APPOINTMENT": "appointment", "CUSTOMER": "customer", "PET": "pet"}
CAMEL = re.compile(r"^[a-z][A-Za-z0-9]*$")


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[dict[str, SandboxHandle]]:
    """One sandbox per wire shape, same seed (hence the same seeded events), 1 day of history."""
    handles: dict[str, SandboxHandle] = {}
    try:
        for shape in ("guide", "oneof", "oneof-base64"):
            handles[shape] = start_sandbox("--history-days", "1", "--body-shape", shape)
        yield handles
    finally:
        for handle in handles.values():
            stop_sandbox(handle)


def everything(handle: SandboxHandle) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """delivery id -> (its webhook, the entry), for every webhook."""
    out = {}
    with handle.client() as api:
        for webhook in api.post("/v1/webhooks:list", json={"pagination": {"pageSize": 100}}).json()["webhooks"]:
            for d in list_all(api, webhook["id"]):
                out[d["id"]] = (webhook, d)
    return out


def proto3_defaults(value: Any, path: str = "") -> list[str]:
    """Paths of values proto3 JSON would have omitted, and of keys that are not lowerCamelCase."""
    bad = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not CAMEL.match(key):
                bad.append(f"{path}.{key} (name)")
            if item is False or item in ("", [], {}) or item is None or (type(item) is int and item == 0):
                bad.append(f"{path}.{key}")
            bad.extend(proto3_defaults(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            bad.extend(proto3_defaults(item, f"{path}[{i}]"))
    return bad


def test_the_same_events_in_three_shapes(sandboxes) -> None:
    logs = {shape: everything(handle) for shape, handle in sandboxes.items()}
    assert set(logs["guide"]) == set(logs["oneof"]) == set(logs["oneof-base64"]) and len(logs["guide"]) > 1000
    kinds = set()
    for delivery_id, (_, guide) in logs["guide"].items():
        bodies = {shape: json.loads(b64decode(log[delivery_id][1]["requestBody"])) for shape, log in logs.items()}
        event_type = guide["eventType"]
        field = FIELD_OF[event_type.partition("_")[0]]
        for shape, body in bodies.items():
            assert {k: body[k] for k in ENVELOPE} == {k: bodies["guide"][k] for k in ENVELOPE}, (shape, delivery_id)
        assert set(bodies["guide"]) == ENVELOPE | {"payload"}
        assert set(bodies["oneof"]) == set(bodies["oneof-base64"]) == ENVELOPE | {field}
        obj = bodies["oneof"][field]
        encoded = bodies["oneof-base64"][field]
        assert isinstance(encoded, str) and base64.b64encode(base64.b64decode(encoded, validate=True)).decode() == encoded
        assert base64.b64decode(encoded) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        assert not proto3_defaults(obj), (delivery_id, proto3_defaults(obj))
        payload = bodies["guide"]["payload"]
        if field == "healthCheck":
            assert obj == payload == {"validation": "hello world"}
        elif event_type.endswith("_DELETED"):
            assert obj == {"id": payload[{"appointment": "appointmentId", "customer": "customerId", "pet": "petId"}[field]],
                           "deleted": True}
        else:
            assert isinstance(obj["id"], str) and obj["id"].isdigit()  # an id, as the API's message has it
            renamed = {"appointment": {"appointmentId", "service"}, "customer": {"customerId", "phone"},
                       "pet": {"petId", "petType", "weightLbs"}}[field]
            assert not renamed & set(obj), obj  # the API's names, not the guide payload's
        kinds.add(field)
    assert kinds == {"healthCheck", "appointment", "customer", "pet"}


def _hmac(secret: str, digest: str, headers: dict[str, Any], body: bytes) -> str:
    values = {k.lower(): v["values"][0] for k, v in headers.items()}
    message = (values["x-moe-client-id"] + values["x-moe-nonce"] + values["x-moe-timestamp"]).encode() + body
    return base64.b64encode(hmac.new(secret.encode(), message, getattr(hashlib, digest)).digest()).decode()


@pytest.mark.parametrize("shape", ["guide", "oneof", "oneof-base64"])
def test_signatures_are_over_the_exact_bytes_sent_seeded_and_live(sandboxes, shape: str) -> None:
    handle = sandboxes[shape]
    crm = next(w for w, s in handle.stats()["webhooks"].items() if s["label"] == "crm-bridge")
    live = handle.emit(crm, "CUSTOMER_UPDATED")
    [received] = handle.received(live["id"])
    assert base64.b64decode(received["body"]) == b64decode(live["requestBody"])  # what was POSTed is what is logged
    checked = 0
    for webhook, d in [*everything(handle).values()]:
        if not webhook.get("secretToken"):
            continue
        body = b64decode(d["requestBody"])
        headers = d["requestHeaders"]
        assert headers["X-Moe-Signature-256"]["values"] == [_hmac(webhook["secretToken"], "sha256", headers, body)]
        assert headers["X-Moe-Signature"]["values"] == [_hmac(webhook["secretToken"], "sha1", headers, body)]
        checked += 1
    assert checked > 500
    assert live["success"] is True  # the receiver verified the live signature too (it answers 401 otherwise)


def test_mixed_gives_each_webhook_one_shape_and_every_shape_a_webhook() -> None:
    handle = start_sandbox("--history-days", "1")  # mixed is the default
    try:
        assert handle.health()["bodyShape"] == "mixed"
        shapes = {s["label"]: s["bodyShape"] for s in handle.stats()["webhooks"].values()}
        assert shapes == {"orders-sync": "oneof", "crm-bridge": "oneof-base64", "legacy-erp": "guide",
                          "pet-profile-feed": "oneof", "analytics-archive": "oneof-base64"}
        with handle.client() as api:
            created = api.post("/v1/webhooks", json={"endpointUrl": f"{handle.receiver_url}/hooks/ok",
                                                     "eventTypes": ["PET_CREATED"]}).json()
            assert handle.stats()["webhooks"][created["id"]]["bodyShape"] == "guide"  # the rotation goes on
            sent = api.post(f"/v1/webhooks/{created['id']}/test", json={"eventType": "PET_CREATED"}).json()
        assert set(json.loads(b64decode(sent["requestBody"]))) == ENVELOPE | {"payload"}
    finally:
        stop_sandbox(handle)


def test_a_test_events_payload_is_sent_as_given_in_each_shape(sandboxes) -> None:
    given = {"customerId": "42", "note": "as given"}
    for shape, handle in sandboxes.items():
        with handle.client() as api:
            crm = next(w for w, s in handle.stats()["webhooks"].items() if s["label"] == "crm-bridge")
            r = api.post(f"/v1/webhooks/{crm}/test", json={
                "eventType": "CUSTOMER_UPDATED", "payload": base64.b64encode(json.dumps(given).encode()).decode()})
        assert r.status_code == 200, r.text
        body = json.loads(b64decode(r.json()["requestBody"]))
        value = body["payload" if shape == "guide" else "customer"]
        if shape == "oneof-base64":
            value = json.loads(base64.b64decode(value, validate=True))
        assert value == given, shape


def test_an_unknown_body_shape_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "sandbox", "--body-shape", "protobuf", "--port", "0", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice: 'protobuf'" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(SandboxError, match=r"^body_shape must be one of guide, oneof, oneof-base64, mixed, not 'x'$"):
        SandboxOptions(body_shape="x").validate()
