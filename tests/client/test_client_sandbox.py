"""The product's client against a real sandbox process over loopback HTTP: what a user's collector sees."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from collectors import client as api
from collectors.signature import verify_request
from tests.conftest import event_object


def make(handle, api_key=None, *, attempts=4):
    sleeps: list[float] = []
    http = api.make_http_client(handle.base_url, handle.api_key if api_key is None else api_key, timeout_s=10)
    return api.MoeGoClient(http, retry=api.RetryConfig(attempts=attempts, base_delay=0.05, max_delay=0.2),
                           sleep=sleeps.append), sleeps


def webhook_named(client, label):
    return next(w for w in client.list_webhooks() if label in w.endpoint_url)


def test_list_webhooks_parses_the_seeded_set(sandbox):
    client, _ = make(sandbox)
    with client:
        hooks = list(client.list_webhooks(page_size=2))  # three pages
    assert len(hooks) == 5 and len({h.id for h in hooks}) == 5
    by_name = {h.endpoint_url.rsplit("/", 1)[-1]: h for h in hooks}
    assert by_name["analytics-archive"].is_active is False
    assert by_name["pet-profile-feed"].secret_token == ""
    assert by_name["orders-sync"].secret_token and by_name["orders-sync"].retry_policy.max_retries == 3


def test_pagination_across_many_pages_sees_every_entry_once(fresh_sandbox):
    client, _ = make(fresh_sandbox)
    with client:
        hook = webhook_named(client, "pet-profile-feed")
        fresh_sandbox.generate(hook.id, 1234, 0.1, spread_seconds=600)
        since = datetime.now(timezone.utc) - timedelta(minutes=11)
        pages = list(client.iter_delivery_pages(hook.id, page_size=50, start=since))
        small = [d.id for p in pages for d in p.deliveries]
        big = [d.id for d in client.list_deliveries(hook.id, page_size=500, start=since)]
    assert len(pages) >= 25
    assert all(p.next_page_token for p in pages[:-1]) and pages[-1].next_page_token == ""
    assert len(small) == len(set(small)) >= 1234
    assert sorted(small) == sorted(big)


def test_filters_success_event_types_and_half_open_interval(sandbox):
    client, _ = make(sandbox)
    with client:
        hook = webhook_named(client, "legacy-erp")
        failed = list(client.list_deliveries(hook.id, success=False))
        succeeded = list(client.list_deliveries(hook.id, success=True))
        everything = list(client.list_deliveries(hook.id))
        assert failed and succeeded
        assert all(not d.success for d in failed) and all(d.success for d in succeeded)
        assert len(failed) + len(succeeded) == len(everything)

        kind = everything[0].event_type
        typed = list(client.list_deliveries(hook.id, event_types=[kind]))
        assert typed and {d.event_type for d in typed} == {kind}

        pivot = everything[len(everything) // 2].delivered_at
        before = {d.id for d in client.list_deliveries(hook.id, end=pivot)}
        after = {d.id for d in client.list_deliveries(hook.id, start=pivot)}
    assert not before & after  # [start, end): the pivot entry is in "after" only
    assert before | after == {d.id for d in everything}
    assert all(d.delivered_at < pivot for d in everything if d.id in before)


def test_delivery_fields_round_trip_with_what_the_receiver_got(fresh_sandbox):
    client, _ = make(fresh_sandbox)
    with client:
        hook = webhook_named(client, "orders-sync")
        sent = client.trigger_test(hook.id, "HEALTH_CHECK", b'{"validation":"hello world"}')
        fetched = client.get_delivery(sent.id)
    assert fetched.id == sent.id and fetched.event_type == "HEALTH_CHECK"
    assert fetched.success and fetched.response_status == 200 and fetched.duration_ms > 0
    received = fresh_sandbox.received(sent.id)
    assert len(received) == 1
    body = base64.b64decode(received[0]["body"])
    assert fetched.request_body == body  # the log holds the exact bytes POSTed
    assert event_object(body)[1] == {"validation": "hello world"}
    headers = dict(received[0]["headers"])
    assert verify_request(hook.secret_token, headers, body)  # signed with the webhook's secret
    assert fetched.request_headers["X-Moe-Delivery-ID"] == [sent.id]


def test_redelivery_logs_a_new_attempt_at_the_same_event(fresh_sandbox):
    client, _ = make(fresh_sandbox)
    with client:
        hook = webhook_named(client, "legacy-erp")
        original = next(iter(client.list_deliveries(hook.id, success=False)))
        new = client.redeliver(original.id, hook.id)
        listed = {d.id: d for d in client.list_deliveries(hook.id, start=new.delivered_at - timedelta(seconds=1))}
    assert new.id != original.id and new.event_id == original.event_id
    assert new.id in listed and listed[new.id].event_id == original.event_id


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_and_unavailability_are_retried_honouring_retry_after(fresh_sandbox, status):
    client, sleeps = make(fresh_sandbox)
    fresh_sandbox.faults(status, 2, retry_after=1)
    with client:
        hooks = list(client.list_webhooks())
    assert len(hooks) == 5
    assert sleeps == [1.0, 1.0]


def test_limits_that_outlast_retries_end_in_one_line(fresh_sandbox):
    client, sleeps = make(fresh_sandbox, attempts=3)
    fresh_sandbox.faults(429, 3, retry_after=1)
    with client, pytest.raises(api.ResourceExhausted) as info:
        list(client.list_webhooks())
    assert len(sleeps) == 2 and "try again later" in str(info.value) and "\n" not in str(info.value)


def test_error_codes(fresh_sandbox):
    good, _ = make(fresh_sandbox)
    wrong, _ = make(fresh_sandbox, api_key="not-the-key")
    readonly, _ = make(fresh_sandbox, api_key=fresh_sandbox.api_key + "-readonly")
    with good, wrong, readonly:
        hook = webhook_named(good, "orders-sync")
        with pytest.raises(api.Unauthenticated, match="check MOEGO_API_KEY"):
            list(wrong.list_webhooks())
        with pytest.raises(api.PermissionDenied):
            readonly.trigger_test(hook.id)
        with pytest.raises(api.NotFound):
            good.get_delivery("dlv_0000000000000000")
        with pytest.raises(api.InvalidArgument):
            list(good.list_deliveries(hook.id, page_size=501))
        with pytest.raises(api.InvalidArgument):
            good.create_webhook("http://partner.example/hooks", ["PET_CREATED"])  # plain http off loopback
        with pytest.raises(api.AlreadyExists):
            good.create_webhook(hook.endpoint_url, ["PET_CREATED"])
        for i in range(5):
            good.create_webhook(f"https://partner{i}.example/hooks", ["PET_CREATED"])
        with pytest.raises(api.ResourceExhausted):
            good.create_webhook("https://one-too-many.example/hooks", ["PET_CREATED"])


def test_webhook_crud(fresh_sandbox):
    client, _ = make(fresh_sandbox)
    with client:
        created = client.create_webhook("https://crm.example/moego", ["CUSTOMER_CREATED"], secret_token="s3cret",
                                        headers={"Authorization": ["Bearer partner"]})
        assert created.id and created.is_active and created.headers == {"Authorization": ["Bearer partner"]}
        updated = client.update_webhook(created.id, "https://crm.example/moego/v2", ["CUSTOMER_CREATED", "PET_CREATED"],
                                        is_active=False)
        assert updated.endpoint_url.endswith("/v2") and updated.is_active is False
        assert client.get_webhook(created.id).event_types == ["CUSTOMER_CREATED", "PET_CREATED"]
        client.delete_webhook(created.id)
        with pytest.raises(api.NotFound):
            client.get_webhook(created.id)


def test_malformed_page_is_a_clear_error(fresh_sandbox):
    client, _ = make(fresh_sandbox)
    with client:
        hook = webhook_named(client, "orders-sync")
        fresh_sandbox.faults(malformed=1)
        with pytest.raises(api.MalformedResponse) as info:
            list(client.list_deliveries(hook.id))
    assert "\n" not in str(info.value)


def test_unreachable_sandbox_is_a_transport_error():
    http = api.make_http_client("http://127.0.0.1:9", "k", timeout_s=2)
    with api.MoeGoClient(http) as client, pytest.raises(api.TransportError, match="cannot reach MoeGo"):
        client.get_webhook("whk_x")  # raises TransportError, never httpx's own ConnectError
