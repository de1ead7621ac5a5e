"""collectors.bodies: every body shape MoeGo sends read back, and hostile bodies read without an exception."""

from __future__ import annotations

import base64
import json

import pytest

from collectors.bodies import MAX_DECODE_CHARS, MAX_DEPTH, decode_body, index_text

ENVELOPE = {"id": "evt_1", "type": "APPOINTMENT_CREATED", "timestamp": "2026-11-20T12:00:00Z", "companyId": "cmp_1"}
APPOINTMENT = {"id": "123", "customerId": "456", "services": [{"name": "Full Groom"}], "status": "UNCONFIRMED"}


def b64(value: object) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def body(**fields: object) -> str:
    return json.dumps({**ENVELOPE, **fields}, separators=(",", ":"))


def test_the_guides_shape_is_read_as_it_is() -> None:
    text = body(payload={"appointmentId": "123"})
    got = decode_body(text)
    assert got.is_json and got.value == json.loads(text)
    assert got.decoded == () and got.note == "" and got.decoded_texts == ()
    assert index_text(text) == text


def test_the_proto_oneof_shape_is_read_as_it_is() -> None:
    text = body(appointment=APPOINTMENT)
    got = decode_body(text)
    assert got.value == {**ENVELOPE, "appointment": APPOINTMENT} and got.decoded == () and got.note == ""
    assert index_text(text) == text


@pytest.mark.parametrize("field", ["appointment", "customer", "pet", "healthCheck", "onlineBooking", "payload"])
def test_a_base64_payload_is_decoded_and_said_so(field: str) -> None:
    text = body(**{field: b64(APPOINTMENT)})
    got = decode_body(text)
    assert got.value == {**ENVELOPE, field: APPOINTMENT}
    assert got.decoded == (field,)
    assert got.note == f"`{field}` decoded from base64 for reading; the raw body is kept exactly as logged."
    assert [json.loads(t) for t in got.decoded_texts] == [APPOINTMENT] and got.encoded == (b64(APPOINTMENT),)
    indexed = index_text(text)
    assert indexed == body(**{field: "__"}).replace('"__"', json.dumps(APPOINTMENT, separators=(",", ":")))
    assert "Full Groom" in indexed and "Full Groom" not in text and b64(APPOINTMENT) not in indexed


def test_a_base64_string_written_with_escaped_slashes_is_indexed_after_the_body() -> None:
    encoded = base64.b64encode(b'{"name":"Biscuit??>>"}').decode()
    assert "/" in encoded
    text = '{"pet":"' + encoded.replace("/", "\\/") + '"}'
    assert decode_body(text).decoded == ("pet",)
    assert index_text(text) == text + '\n{"name":"Biscuit??>>"}'


def test_url_safe_and_unpadded_base64_are_read_as_proto3_json_parsers_do() -> None:
    raw = json.dumps({"name": "Ünïcode ~~~>>>???"}).encode()
    for encoded in (base64.urlsafe_b64encode(raw).decode().rstrip("="), base64.b64encode(raw).decode().rstrip("=")):
        assert decode_body(body(pet=encoded)).value["pet"] == {"name": "Ünïcode ~~~>>>???"}


def test_a_string_that_is_not_base64_is_shown_as_received_with_a_note() -> None:
    text = body(customer="not base64 at all!")
    got = decode_body(text)
    assert got.value == json.loads(text) and got.decoded == ()
    assert got.note == "`customer` is a string but not base64: shown as received."
    assert index_text(text) == text


@pytest.mark.parametrize(
    ("encoded", "why"),
    [
        (base64.b64encode(b"hello world").decode(), "`payload` is base64 of 11 bytes of text that is not JSON"),
        (base64.b64encode(b"\xff\xfe\x00binary").decode(), "`payload` is base64 of 9 bytes that are not UTF-8 text"),
        (base64.b64encode(b"[1, 2, 3]").decode(), "`payload` is base64 of JSON that is not an object"),
        ("", "`payload` is a string but not base64"),
        ("QQ=Q", "`payload` is a string but not base64"),
        ("QUJD=", "`payload` is a string but not base64"),
    ],
)
def test_base64_of_something_that_is_not_a_json_object_stays_as_received(encoded: str, why: str) -> None:
    text = body(payload=encoded)
    got = decode_body(text)
    assert got.value == json.loads(text) and got.decoded == () and got.note == f"{why}: shown as received."


def test_one_field_decoded_and_one_not_are_both_said() -> None:
    text = body(appointment=b64(APPOINTMENT), payload="%%%")
    got = decode_body(text)
    assert got.decoded == ("appointment",) and got.value["payload"] == "%%%"
    assert got.note == ("`appointment` decoded from base64 for reading; the raw body is kept exactly as logged. "
                        "`payload` is a string but not base64: shown as received.")


def test_a_decoded_payload_is_never_decoded_again() -> None:
    inner = {"note": b64({"secret": "layer two"})}
    got = decode_body(body(customer=b64(inner)))
    assert got.value["customer"] == inner  # the nested base64 string stays a string


@pytest.mark.parametrize(
    ("text", "is_json", "note"),
    [
        ("", False, "Empty body."),
        ("plain text, not JSON", False, ""),
        ("[1, 2]", True, ""),
        ('"just a string"', True, ""),
        ("{\"unterminated\": ", False, ""),
        ("\x00\x01 control bytes", False, ""),
    ],
)
def test_bodies_that_are_not_event_objects_are_read_without_error(text: str, is_json: bool, note: str) -> None:
    got = decode_body(text)
    assert got.is_json is is_json and got.note == note and got.decoded == ()
    assert index_text(text) == text


def test_a_body_stored_as_base64_because_it_is_not_utf8_is_left_alone() -> None:
    stored = base64.b64encode(b"\xff\xfe" + json.dumps({"payload": b64({"a": 1})}).encode()).decode()
    got = decode_body(stored, is_base64=True)
    assert got.value is None and got.note == "Not UTF-8 text: shown as base64."
    assert index_text(stored, is_base64=True) == stored


def test_deep_nesting_is_refused_without_recursion_errors() -> None:
    deep_outer = "[" * 100_000 + "]" * 100_000
    got = decode_body(deep_outer)
    assert got.value is None and got.note == f"JSON nested deeper than {MAX_DEPTH} levels: shown as received."
    just_too_deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert decode_body(just_too_deep).note == f"JSON nested deeper than {MAX_DEPTH} levels: shown as received."
    nested: dict = {}
    cursor = nested
    for _ in range(MAX_DEPTH + 5):
        cursor["x"] = {}
        cursor = cursor["x"]
    text = body(pet=b64(nested))
    got = decode_body(text)
    assert got.decoded == () and got.value["pet"] == json.loads(text)["pet"]
    assert got.note == (f"`pet` is base64 of {len(json.dumps(nested, separators=(',', ':'))):,} bytes of text that is "
                        f"nested deeper than {MAX_DEPTH} levels: shown as received.")
    assert index_text(text) == text


def test_a_body_over_the_size_limit_is_not_parsed() -> None:
    text = body(pet=b64({"name": "x" * MAX_DECODE_CHARS}))
    got = decode_body(text)
    assert got.value is None and got.note == f"Longer than {MAX_DECODE_CHARS:,} characters: shown as received."
    assert index_text(text) == text


def test_hostile_strings_never_raise() -> None:
    samples = ['{"payload": "' + "A" * 4097 + '"}', '{"payload": "====", "pet": "\\ud800"}', '{"pet": 1e999}',
               '{"payload": "' + base64.b64encode(b'{"a": NaN}').decode() + '"}', "\ud800", '{"customer": null}',
               '{"payload": {"payload": "aGk="}}', "{" * 5000]
    for text in samples:
        got = decode_body(text)
        assert isinstance(got.note, str)
        assert isinstance(index_text(text), str)
