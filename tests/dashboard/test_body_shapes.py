"""Every body shape MoeGo sends, end to end over loopback: the sandbox sends it (seeded history and a live
event), the collector archives it, the detail shows it decoded (AppTest), search finds a word that is only
inside the decoded payload, and the CSV export holds each body byte for byte as the sandbox logged it."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from streamlit.testing.v1 import AppTest

from collectors.client import make_client
from collectors.collect import collect
from tests.collectors.conftest import run_cli, sandbox_now, sandbox_settings
from tests.conftest import SandboxHandle, event_object, running_sandbox

from .test_app import everything_shown, metrics, no_exception

ENVELOPE = {"id", "type", "timestamp", "companyId"}


def logged_bodies(handle: SandboxHandle) -> dict[str, tuple[str, bytes]]:
    """Every entry the sandbox logs: id -> (webhook id, the request body bytes it logged)."""
    with make_client(sandbox_settings(handle, Path("unused.db"))) as client:
        return {d.id: (hook.id, d.request_body) for hook in client.list_webhooks() for d in client.list_deliveries(hook.id)}


def shape_of(body: bytes) -> str:
    """The wire shape of a body, read independently of the product's decoder."""
    event = json.loads(body)
    [field] = set(event) - ENVELOPE
    if field == "payload":
        return "guide"
    return "oneof-base64" if isinstance(event[field], str) else "oneof"


@pytest.fixture(scope="module", params=["guide", "oneof", "oneof-base64", "mixed"])
def shaped(request, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A sandbox sending one body shape, one live event emitted, and everything collected into an archive."""
    shape = request.param
    with running_sandbox("--history-days", "1", "--body-shape", shape) as handle:
        crm = next(w for w, s in handle.stats()["webhooks"].items() if s["label"] == "crm-bridge")
        live = handle.emit(crm, "CUSTOMER_CREATED")
        db_path = tmp_path_factory.mktemp(f"shape-{shape}") / "archive.db"
        result = collect(sandbox_settings(handle, db_path), now=sandbox_now(handle))
        assert result.ok, result.summary_lines
        yield {"shape": shape, "handle": handle, "db": db_path, "crm": crm, "live": live["id"],
               "logged": logged_bodies(handle)}


def customer_entry(shaped: dict[str, Any]) -> tuple[str, dict[str, Any], bytes]:
    """The live CUSTOMER_CREATED entry: its id, its customer object (decoded independently) and its raw body."""
    _, body = shaped["logged"][shaped["live"]]
    return shaped["live"], event_object(body)[1], body


def test_the_sandbox_sends_the_shape_asked_for_in_history_and_live(shaped) -> None:
    shapes = {shape_of(body) for _, body in shaped["logged"].values()}
    expected = {"guide", "oneof", "oneof-base64"} if shaped["shape"] == "mixed" else {shaped["shape"]}
    assert shapes == expected
    by_webhook: dict[str, set[str]] = {}
    for webhook_id, body in shaped["logged"].values():
        by_webhook.setdefault(webhook_id, set()).add(shape_of(body))
    assert all(len(s) == 1 for s in by_webhook.values())  # one shape per webhook, seeded and live alike
    _, customer, body = customer_entry(shaped)
    assert customer["firstName"] and customer["email"].endswith("@example.com")
    if shaped["shape"] != "guide" and shape_of(body) != "guide":
        assert set(json.loads(body)) == ENVELOPE | {"customer"} and "customerId" not in customer  # the API's Customer


def test_the_archive_holds_every_body_exactly_as_logged_and_the_export_too(shaped, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    done = run_cli("export", "--since", "2000-01-01", "--until", "9999-12-31", "--db", str(shaped["db"]),
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="", encoding="utf-8") as f:
        exported = {row["id"]: row for row in csv.DictReader(f)}
    assert set(exported) == set(shaped["logged"]) and shaped["live"] in exported
    for delivery_id, (_, body) in shaped["logged"].items():
        row = exported[delivery_id]
        assert row["request_body_encoding"] == "utf-8"
        assert row["request_body"].encode("utf-8") == body, delivery_id  # byte for byte, never rewritten


def test_search_finds_a_word_that_is_only_inside_the_payload(shaped, run_app) -> None:
    delivery_id, customer, body = customer_entry(shaped)
    email = customer["email"]
    if shape_of(body) == "oneof-base64":
        assert email.encode() not in body  # only the decoded payload holds it
    expected = {i for i, (_, b) in shaped["logged"].items() if email in json.dumps(event_object(b)[1])}
    assert delivery_id in expected
    at = run_app(shaped["db"], page="views/deliveries.py", query={"q": email, "range": "7d"})
    no_exception(at)
    assert set(at.dataframe(key="deliveries_table").value["id"]) == expected
    assert metrics(at)["Deliveries in view"][0] == str(len(expected))


def test_the_detail_shows_the_payload_decoded_and_the_raw_body_byte_for_byte(shaped, run_app) -> None:
    delivery_id, customer, body = customer_entry(shaped)
    at: AppTest = run_app(shaped["db"], page="views/deliveries.py", query={"delivery": delivery_id, "range": "7d"})
    no_exception(at)
    codes = [c.value for c in at.code]
    event = json.loads(body)
    field = next(iter(set(event) - ENVELOPE))
    pretty = json.dumps({**event, field: customer}, indent=2, ensure_ascii=False)
    assert pretty in codes  # the payload shown as an object, whatever its shape
    assert body.decode("utf-8") in codes  # the raw body, one click away (an expander), exactly as logged
    captions = [c.value for c in at.caption]
    if shape_of(body) == "oneof-base64":
        assert "`customer` decoded from base64 for reading; the raw body is kept exactly as logged." in captions
        assert customer["email"] not in body.decode() and customer["email"] in everything_shown(at)
    else:
        assert "JSON, pretty-printed." in captions
        assert not any("base64" in c for c in captions)
    expander = [e for e in at.expander if e.label == "Raw body, exactly as logged"]
    assert expander and [c.value for c in expander[0].code] == [body.decode("utf-8")]


def test_a_payload_that_claims_base64_but_is_not_is_shown_as_received_with_a_note(run_app, live_seed) -> None:
    from datetime import timedelta

    from collectors import archive
    from collectors.archive import writer
    from tests.seed import ALPHA, delivery

    bodies = {
        "dlv_not_b64": b'{"id":"evt_x","type":"PET_CREATED","pet":"Biscuit <b>not</b> base64 *at all*"}',
        "dlv_not_json": b'{"id":"evt_y","type":"HEALTH_CHECK","payload":"' + base64.b64encode(b"hello world") + b'"}',
    }
    db = archive.connect(live_seed.path)
    with archive.transaction(db):
        writer.save_deliveries(db, [delivery(i, ALPHA, live_seed.now - timedelta(minutes=1), request_body=b)
                                   for i, b in bodies.items()], seen_at=live_seed.now)
    db.close()
    notes = {
        "dlv_not_b64": "`pet` is a string but not base64: shown as received.",
        "dlv_not_json": "`payload` is base64 of 11 bytes of text that is not JSON: shown as received.",
    }
    for delivery_id, body in bodies.items():
        at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": delivery_id})
        no_exception(at)
        assert notes[delivery_id] in [c.value for c in at.caption]
        codes = [c.value for c in at.code]
        assert json.dumps(json.loads(body), indent=2) in codes and body.decode() in codes
        assert "hello world" not in everything_shown(at)


def test_pretty_body_decodes_only_an_events_payloads() -> None:
    from dashboard.present import pretty_body

    text = json.dumps({"id": "evt_1", "type": "PET_CREATED", "pet": base64.b64encode(b'{"name":"Luna"}').decode()})
    shown = pretty_body(text, False, decode_payloads=True)
    assert json.loads(shown.text)["pet"] == {"name": "Luna"} and shown.decoded == ("pet",) and shown.language == "json"
    assert shown.note == "`pet` decoded from base64 for reading; the raw body is kept exactly as logged."
    as_response = pretty_body(text, False)  # a response body is never an event: shown as it is
    assert json.loads(as_response.text) == json.loads(text) and as_response.note == "JSON, pretty-printed."
