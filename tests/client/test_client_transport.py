"""The client's wire behaviour with an injected transport: request shapes, errors, retries, pagination."""

import base64
import json
from datetime import datetime, timezone

import httpx
import pytest

from collectors import client as api
from collectors.config import load_settings


class Recorder:
    """A MockTransport handler answering from a script of responses, recording every request."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(recorder, attempts=4):
    sleeps = []
    http = api.make_http_client("https://openapi.example", "secret-key", transport=httpx.MockTransport(recorder))
    client = api.MoeGoClient(http, retry=api.RetryConfig(attempts=attempts, base_delay=0.5, max_delay=4), sleep=sleeps.append)
    return client, sleeps


def error(status, code, message="", **headers):
    return httpx.Response(status, json={"code": code, "message": message, "details": []}, headers=headers)


def test_auth_header_is_basic_base64_of_the_key():
    rec = Recorder(httpx.Response(200, json={"id": "d1"}))
    client, _ = make(rec)
    client.get_delivery("d1")
    assert rec.requests[0].headers["Authorization"] == "Basic " + base64.b64encode(b"secret-key").decode()
    assert rec.requests[0].url.path == "/v1/webhook/deliveries/d1"


def test_list_deliveries_follows_tokens_and_sends_filters():
    rec = Recorder(
        httpx.Response(200, json={"nextPageToken": "t2", "deliveries": [{"id": "a"}, {"id": "b"}]}),
        httpx.Response(200, json={"nextPageToken": "", "deliveries": [{"id": "c"}]}),
    )
    client, _ = make(rec)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    end = datetime(2026, 11, 2, tzinfo=timezone.utc)
    got = [d.id for d in client.list_deliveries("whk1", page_size=2, success=False, event_types=["PET_CREATED"], start=start, end=end)]
    assert got == ["a", "b", "c"]
    first, second = (json.loads(r.content) for r in rec.requests)
    assert rec.requests[0].url.path == "/v1/webhook/deliveries:list"
    assert first == {
        "pagination": {"pageSize": 2},
        "webhookId": "whk1",
        "filter": {
            "eventTypes": ["PET_CREATED"],
            "success": False,
            "deliveryTime": {"startTime": "2026-11-01T00:00:00.000000Z", "endTime": "2026-11-02T00:00:00.000000Z"},
        },
    }
    assert second["pagination"] == {"pageSize": 2, "pageToken": "t2"}


def test_last_page_without_token_field_ends_iteration():
    rec = Recorder(httpx.Response(200, json={}))
    client, _ = make(rec)
    assert list(client.list_webhooks()) == []
    assert json.loads(rec.requests[0].content) == {"pagination": {"pageSize": 500}}


def test_redeliver_uses_plural_path_and_webhook_query():
    rec = Recorder(httpx.Response(200, json={"id": "new", "success": True, "responseStatus": 200}))
    client, _ = make(rec)
    new = client.redeliver("old", "whk1")
    assert new.id == "new" and new.success
    req = rec.requests[0]
    assert req.method == "POST" and req.url.path == "/v1/webhooks/deliveries/old/redeliver"
    assert req.url.params["webhookId"] == "whk1"


def test_trigger_test_sends_base64_payload():
    rec = Recorder(httpx.Response(200, json={"id": "t"}))
    client, _ = make(rec)
    client.trigger_test("whk1", "HEALTH_CHECK", b"hello world")
    assert json.loads(rec.requests[0].content) == {"eventType": "HEALTH_CHECK", "payload": "aGVsbG8gd29ybGQ="}
    assert rec.requests[0].url.path == "/v1/webhooks/whk1/test"


def test_ids_cannot_escape_their_path_segment():
    rec = Recorder(httpx.Response(200, json={"id": "x"}))
    client, _ = make(rec)
    client.get_webhook("../deliveries:list")
    assert rec.requests[0].url.raw_path == b"/v1/webhooks/..%2Fdeliveries%3Alist"


def test_429_is_retried_honouring_retry_after():
    rec = Recorder(error(429, 8, "too many", **{"Retry-After": "3"}), httpx.Response(200, json={"id": "d"}))
    client, sleeps = make(rec)
    assert client.get_delivery("d").id == "d"
    assert sleeps == [3.0]


def test_503_without_retry_after_backs_off_exponentially_with_jitter_and_bounded():
    rec = Recorder(*[error(503, 14, "down")] * 3, httpx.Response(200, json={"id": "d"}))
    client, sleeps = make(rec)
    client.get_delivery("d")
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps, start=1):
        assert 0 <= slept <= min(4, 0.5 * 2 ** (attempt - 1))


def test_retries_give_up_with_one_line_error():
    rec = Recorder(*[error(429, 8, "push limit", **{"Retry-After": "1"})] * 4)
    client, sleeps = make(rec, attempts=4)
    with pytest.raises(api.ResourceExhausted) as info:
        client.get_delivery("d")
    assert len(rec.requests) == 4 and sleeps == [1.0, 1.0, 1.0]
    assert "RESOURCE_EXHAUSTED" in str(info.value) and "\n" not in str(info.value)
    assert info.value.retry_after == 1.0


@pytest.mark.parametrize(
    "status, code, cls",
    [
        (400, 3, api.InvalidArgument),
        (401, 16, api.Unauthenticated),
        (403, 7, api.PermissionDenied),
        (404, 5, api.NotFound),
        (409, 6, api.AlreadyExists),
        (500, 13, api.Internal),
    ],
)
def test_other_errors_are_not_retried_and_carry_the_grpc_code(status, code, cls):
    rec = Recorder(error(status, code, "nope"))
    client, sleeps = make(rec)
    with pytest.raises(cls) as info:
        client.get_delivery("d")
    assert len(rec.requests) == 1 and sleeps == []
    assert info.value.http_status == status and info.value.code == code
    assert isinstance(info.value, api.ApiError)


def test_wrong_key_message_says_what_to_do():
    client, _ = make(Recorder(error(401, 16, "invalid api key")))
    with pytest.raises(api.Unauthenticated, match="check MOEGO_API_KEY"):
        list(client.list_webhooks())


def test_non_json_error_page_from_a_proxy_is_still_classified():
    rec = Recorder(*[httpx.Response(502, text="<html>Bad Gateway</html>")] * 2)
    client, _ = make(rec, attempts=2)
    with pytest.raises(api.Unavailable) as info:
        client.get_delivery("d")
    assert info.value.code_name == "UNAVAILABLE"


def test_timeouts_are_retried_for_reads_but_not_for_redelivery():
    timeout = httpx.ReadTimeout("slow")
    rec = Recorder(timeout, httpx.Response(200, json={"id": "d"}))
    client, sleeps = make(rec)
    assert client.get_delivery("d").id == "d" and len(sleeps) == 1

    rec = Recorder(timeout, httpx.Response(200, json={"id": "n"}))
    client, sleeps = make(rec)
    with pytest.raises(api.TransportError, match="did not answer RedeliverWebhookDelivery"):
        client.redeliver("d", "w")
    assert len(rec.requests) == 1  # the first attempt may have gone through: never send twice


def test_unreachable_host_is_a_transport_error_without_retries():
    rec = Recorder(httpx.ConnectError("connection refused"))
    client, sleeps = make(rec)
    with pytest.raises(api.TransportError, match="cannot reach MoeGo at https://openapi.example"):
        client.get_delivery("d")
    assert sleeps == []


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, json=["a list"]),
        httpx.Response(200, json={"deliveries": {"id": "x"}}),
        httpx.Response(200, json={"deliveries": [{"id": "x", "durationMs": "fast"}]}),
        httpx.Response(200, json={"deliveries": [], "nextPageToken": 7}),
    ],
)
def test_malformed_pages_raise_malformed_response(response):
    client, _ = make(Recorder(response))
    with pytest.raises(api.MalformedResponse) as info:
        list(client.list_deliveries("w"))
    assert "\n" not in str(info.value)


def test_make_client_requires_a_key():
    with pytest.raises(Exception, match="MOEGO_API_KEY"):
        api.make_client(load_settings(environ={}))


def test_settings_repr_hides_the_key():
    settings = load_settings(environ={"MOEGO_API_KEY": "super-secret"})
    assert settings.api_key == "super-secret" and "super-secret" not in repr(settings)


@pytest.mark.parametrize("status, name", [(502, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")])
def test_gateway_errors_are_not_retried_for_redelivery(status, name):
    rec = Recorder(httpx.Response(status, text="gateway"), httpx.Response(200, json={"id": "n"}))
    client, sleeps = make(rec)
    with pytest.raises(api.ApiError) as info:
        client.redeliver("d", "w")
    assert info.value.code_name == name
    assert len(rec.requests) == 1 and sleeps == []


def test_redelivery_is_retried_on_429_which_means_not_sent():
    rec = Recorder(error(429, 8, "push limit", **{"Retry-After": "2"}), httpx.Response(200, json={"id": "n"}))
    client, sleeps = make(rec)
    assert client.redeliver("d", "w").id == "n" and sleeps == [2.0]


def test_credentials_in_the_base_url_never_reach_an_error_line():
    http = api.make_http_client("http://ops:hunter2@127.0.0.1:9", "k", timeout_s=2)
    with api.MoeGoClient(http) as client, pytest.raises(api.TransportError) as info:
        client.get_webhook("whk_x")
    assert "hunter2" not in str(info.value) and "cannot reach MoeGo at http://127.0.0.1:9" in str(info.value)


def test_a_page_token_that_never_changes_ends_in_a_clear_error_not_an_endless_loop():
    rec = Recorder(*[httpx.Response(200, json={"nextPageToken": "same", "deliveries": [{"id": "a"}]})] * 3)
    client, _ = make(rec)
    with pytest.raises(api.MalformedResponse, match="same page token again"):
        list(client.list_deliveries("w"))
    assert len(rec.requests) == 2


def test_unimplemented_is_named():
    client, _ = make(Recorder(error(501, 12, "method not allowed")))
    with pytest.raises(api.ApiError) as info:
        client.get_delivery("d")
    assert info.value.code_name == "UNIMPLEMENTED"
