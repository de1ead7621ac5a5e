"""proto3 JSON as MoeGo writes it: omitted defaults, int64 strings, base64, nanoseconds.

The messages in messages/ are written by hand in the shapes of MoeGo's integration guide and proto
definitions (the guide's own examples, plus edge cases such as an unknown event type); none was
captured from the live API, which needs an account.
"""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collectors.models import MalformedMessage, Webhook, WebhookDelivery, format_timestamp, parse_bytes, parse_timestamp

MESSAGES = Path(__file__).parent / "messages"


def load(name: str) -> dict:
    return json.loads((MESSAGES / name).read_text())


def test_full_delivery_parses_every_field():
    page = load("list_deliveries_page.json")
    d = WebhookDelivery.from_json(page["deliveries"][0])
    assert d.id == "whkdXfP"
    assert d.webhook_id == "whk01"
    assert d.event_type == "APPOINTMENT_CREATED"
    assert d.request_headers["Authorization"] == ["Bearer your_api_key"]
    assert d.request_body == b'{"id":"a21eb4cd","type":"APPOINTMENT_CREATED"}'
    assert d.response_body == b'{"ok":true}'
    assert d.response_status == 200
    assert d.duration_ms == 742  # int64 arrives as the string "742"
    assert d.success is True
    assert d.delivered_at == datetime(2025, 6, 30, 11, 58, 36, 740351, tzinfo=timezone.utc)
    assert d.request_format == "CONTENT_TYPE_JSON"


def test_omitted_fields_take_proto3_defaults_and_unknown_enums_stay_text():
    d = WebhookDelivery.from_json(load("list_deliveries_page.json")["deliveries"][1])
    assert d.success is False  # `success: false` is omitted on the wire
    assert d.response_status == 0
    assert d.duration_ms == 0
    assert d.request_headers == {} and d.request_body == b""
    assert d.retry_count == 3
    assert d.event_type == "PET_TELEPORTED"  # not in today's list: kept, never rejected
    # +02:00 offset normalised to UTC
    assert d.delivered_at == datetime(2025, 6, 30, 11, 58, 36, tzinfo=timezone.utc)


def test_webhook_parses_and_keeps_defaults():
    w = Webhook.from_json(load("webhook.json"))
    assert w.id == "whk_001"
    assert w.is_active is True and w.verify_ssl is False  # verifySsl omitted = false
    assert w.retry_policy is not None and w.retry_policy.retryable_http_codes == [500, 502, 503, 504]
    assert w.organizations[0].id == "1029"
    assert w.headers == {"Authorization": ["Bearer your_api_key"]}
    assert "your_secure_token_here" not in repr(w)  # the secret never shows in logs via repr


def test_minimal_webhook_defaults_content_type():
    w = Webhook.from_json({"id": "w"})
    assert w.content_type == "CONTENT_TYPE_JSON" and w.event_types == [] and w.retry_policy is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-06-30T11:58:36.740351808Z", datetime(2025, 6, 30, 11, 58, 36, 740351, tzinfo=timezone.utc)),
        ("2025-06-30T11:58:36Z", datetime(2025, 6, 30, 11, 58, 36, tzinfo=timezone.utc)),
        ("2025-06-30T11:58:36.1z", datetime(2025, 6, 30, 11, 58, 36, 100000, tzinfo=timezone.utc)),
        ("2025-06-30T06:28:36.5-05:30", datetime(2025, 6, 30, 11, 58, 36, 500000, tzinfo=timezone.utc)),
    ],
)
def test_timestamps(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("bad", ["2025-06-30", "2025-13-01T00:00:00Z", "yesterday", 1751284717825, None])
def test_bad_timestamps_are_malformed(bad):
    with pytest.raises(MalformedMessage):
        parse_timestamp(bad)


def test_format_timestamp_is_fixed_width_utc():
    assert format_timestamp(datetime(2025, 6, 30, 11, 58, 36, tzinfo=timezone.utc)) == "2025-06-30T11:58:36.000000Z"
    with pytest.raises(ValueError):
        format_timestamp(datetime(2025, 6, 30))


def test_bytes_accept_standard_urlsafe_and_unpadded_base64():
    assert parse_bytes("aGVsbG8gd29ybGQ=") == b"hello world"
    assert parse_bytes("aGVsbG8gd29ybGQ") == b"hello world"
    assert parse_bytes("-_8=") == b"\xfb\xff"
    with pytest.raises(MalformedMessage):
        parse_bytes("not base64!")


@pytest.mark.parametrize(
    "message",
    [
        {"id": "d", "durationMs": "seven"},
        {"id": "d", "success": "true"},
        {"id": "d", "requestHeaders": {"X": {"values": "v"}}},
        {"id": "d", "responseStatus": True},
        {"webhookId": "w"},  # no id
        ["not", "an", "object"],
    ],
)
def test_wrong_types_are_malformed(message):
    with pytest.raises(MalformedMessage):
        WebhookDelivery.from_json(message)


def test_int64_accepts_numbers_too():
    assert WebhookDelivery.from_json({"id": "d", "durationMs": 12}).duration_ms == 12


def test_an_odd_display_only_field_does_not_reject_the_webhook():
    """The contract leaves retryPolicy's types open: a 1.5 backoff must not stop a webhook from being archived."""
    w = Webhook.from_json({"id": "w", "endpointUrl": "https://x", "retryPolicy": {"backoffFactor": 1.5},
                           "organizations": {"not": "a list"}})
    assert w.id == "w" and w.endpoint_url == "https://x"
    assert w.retry_policy is None and w.organizations == []


def test_fields_the_monitor_relies_on_stay_strict():
    with pytest.raises(MalformedMessage):
        Webhook.from_json({"id": "w", "isActive": "yes"})
