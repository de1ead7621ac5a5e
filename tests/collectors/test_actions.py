"""Actions (collectors.redelivery, .ratelimit, .bulk, .trigger): redelivery with its audit and double-click guard, the rate limiter, bulk rules, test events.

MoeGo is an ``httpx.MockTransport`` answering like the API contract; clocks are fake, so nothing waits.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Iterator

import httpx
import pytest

from collectors import archive, bulk, ratelimit, redelivery, trigger
from collectors.client import MoeGoClient, RetryConfig, make_http_client
from collectors.config import Settings
from collectors.models import format_timestamp
from dashboard import queries
from collectors.archive.filters import Filters

from tests.seed import ALPHA, BETA, NOW, Seed

_REDELIVER = re.compile(r"^/v1/webhooks/deliveries/([^/]+)/redeliver$")


class FakeTime:
    """One fake clock for the limiter (monotonic seconds) and the audit (UTC datetimes); sleeping advances it."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.t)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class FakeMoeGo:
    """Answers RedeliverWebhookDelivery and TriggerTestWebhookDelivery; records (fake time, delivery, webhook)."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.calls: list[tuple[float, str, str]] = []
        self.answers: dict[str, list[httpx.Response]] = {}  # delivery id -> scripted answers, used first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        match = _REDELIVER.match(request.url.path)
        if match:
            delivery_id, webhook_id = match.group(1), request.url.params["webhookId"]
            self.calls.append((self.time.t, delivery_id, webhook_id))
            scripted = self.answers.get(delivery_id)
            if scripted:
                return scripted.pop(0)
            return httpx.Response(200, json=self.attempt(f"re_{delivery_id}_{len(self.calls)}", webhook_id))
        if request.url.path.endswith("/test") and request.url.path.split("/")[3] in (ALPHA, BETA):
            webhook_id = request.url.path.split("/")[3]
            body = json.loads(request.content or b"{}")
            self.calls.append((self.time.t, "test", webhook_id))
            return httpx.Response(200, json=self.attempt("test_1", webhook_id, event_type=body.get("eventType", "HEALTH_CHECK")))
        return httpx.Response(404, json={"code": 5, "message": "webhook not found", "details": []})

    def attempt(self, new_id: str, webhook_id: str, event_type: str = "APPOINTMENT_CREATED") -> dict:
        """A new delivery attempt as MoeGo's proto3 JSON (defaults omitted, int64 as strings)."""
        return {
            "id": new_id, "webhookId": webhook_id, "eventType": event_type, "eventId": f"evt_{new_id}",
            "requestUrl": "https://receiver.example/", "responseStatus": 200, "success": True,
            "deliveredAt": format_timestamp(self.time.now()), "durationMs": "42",
            "requestHeaders": {"Authorization": {"values": ["Bearer leaked"]}},
        }


def error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "details": []}, headers=headers)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def moego(fake_time: FakeTime) -> FakeMoeGo:
    return FakeMoeGo(fake_time)


@pytest.fixture
def client(moego: FakeMoeGo, fake_time: FakeTime) -> Iterator[MoeGoClient]:
    http = make_http_client("https://openapi.example", "key", transport=httpx.MockTransport(moego))
    with MoeGoClient(http, retry=RetryConfig(attempts=1), sleep=fake_time.sleep) as c:
        yield c


@pytest.fixture
def db(seeded: Seed):
    handle = archive.connect(seeded.path)
    yield handle
    handle.close()


def audit(db) -> list[dict]:
    cursor = db.execute("SELECT * FROM redeliveries WHERE delivery_id != 'dlv_a03' ORDER BY id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


A02 = redelivery.Candidate("dlv_a02", ALPHA, "evt_dlv_a02", format_timestamp(NOW - timedelta(minutes=60)))


def test_redeliver_audits_and_saves_the_new_attempt(client, db, moego, fake_time) -> None:
    result = redelivery.redeliver(client, db, A02, clock=fake_time.now)
    assert result.outcome == "sent" and result.new_delivery is not None
    assert moego.calls == [(0.0, "dlv_a02", ALPHA)]
    [row] = audit(db)
    assert (row["outcome"], row["new_delivery_id"], row["new_success"], row["new_status"], row["error"]) == (
        "sent", result.new_delivery.id, 1, 200, None)
    assert (row["requested_by"], row["event_id"], row["requested_at"]) == ("dashboard", "evt_dlv_a02",
                                                                           format_timestamp(NOW))
    saved = db.execute("SELECT success, request_headers FROM deliveries WHERE id = ?", (result.new_delivery.id,)).fetchone()
    assert saved[0] == 1 and "leaked" not in saved[1]
    assert "succeeded (HTTP 200)" in result.message


def test_a_double_click_sends_once(client, db, moego, fake_time) -> None:
    first = redelivery.redeliver(client, db, A02, clock=fake_time.now)
    fake_time.t += 2
    second = redelivery.redeliver(client, db, A02, clock=fake_time.now)
    assert (first.outcome, second.outcome) == ("sent", "skipped")
    assert len(moego.calls) == 1
    rows = audit(db)
    assert [r["outcome"] for r in rows] == ["sent", "skipped"]
    assert "within 60 s is refused" in rows[1]["error"]


def test_the_guard_lets_a_deliberate_retry_through_after_its_window(client, db, moego, fake_time) -> None:
    redelivery.redeliver(client, db, A02, clock=fake_time.now)
    fake_time.t += redelivery.GUARD_SECONDS + 1
    assert redelivery.redeliver(client, db, A02, clock=fake_time.now).outcome == "sent"
    assert len(moego.calls) == 2


def test_a_moego_error_is_audited_not_raised(client, db, moego, fake_time) -> None:
    moego.answers["dlv_a02"] = [error(404, 5, "delivery not found")]
    result = redelivery.redeliver(client, db, A02, clock=fake_time.now)
    assert result.outcome == "failed" and "NOT_FOUND" in (result.error or "") and "\n" not in result.error
    [row] = audit(db)
    assert row["outcome"] == "failed" and row["error"] == result.error and row["new_delivery_id"] is None


def test_limiter_allows_100_per_sliding_minute_per_webhook(fake_time) -> None:
    limiter = ratelimit.RateLimiter(100, 60.0, clock=fake_time.monotonic)
    sent = []
    for _ in range(250):
        limiter.acquire("a", sleep=fake_time.sleep)
        sent.append(fake_time.t)
        fake_time.t += 0.01  # each send takes a little time
    assert max(sum(1 for s in sent if start <= s < start + 60) for start in sent) == 100
    assert sent[99] < 1.0 and 60.0 <= sent[100] < 61.5 and 120.0 <= sent[200] < 122.5
    assert limiter.wait_time("b") == 0.0  # another webhook is not held back


def test_limiter_honours_a_penalty(fake_time) -> None:
    limiter = ratelimit.RateLimiter(100, 60.0, clock=fake_time.monotonic)
    limiter.penalize("a", 7.5)
    assert limiter.wait_time("a") == pytest.approx(7.5)
    limiter.penalize("a", 2.0)  # never shortens
    assert limiter.wait_time("a") == pytest.approx(7.5)
    assert limiter.acquire("a", sleep=fake_time.sleep) == pytest.approx(7.5)


def test_plan_skips_events_that_later_succeeded(conn) -> None:
    found = queries.failed_candidates(conn, Filters(), Filters().window(NOW), limit=100)
    assert len(found) == 14
    plan = bulk.plan_bulk(conn, found, now=NOW)
    skipped = {c.delivery_id: why for c, why in plan.skipped}
    assert set(skipped) == {"dlv_r1", "dlv_r2"}
    assert "later succeeded (delivery dlv_r3" in skipped["dlv_r1"]
    assert len(plan.to_send) == 12 and plan.total == 14


def test_plan_sends_an_event_once_and_ignores_repeats(conn) -> None:
    old = redelivery.Candidate("x_old", BETA, "evt_same", "2026-11-20T01:00:00.000000Z")
    new = redelivery.Candidate("x_new", BETA, "evt_same", "2026-11-20T02:00:00.000000Z")
    other_hook = redelivery.Candidate("x_alpha", ALPHA, "evt_same", "2026-11-20T01:30:00.000000Z")
    plan = bulk.plan_bulk(conn, [old, new, other_hook, new], now=NOW)
    assert [c.delivery_id for c in plan.to_send] == ["x_new", "x_alpha"]
    reasons = dict((c.delivery_id, why) for c, why in plan.skipped)
    assert reasons == {"x_new": "listed twice", "x_old": "the event's newer failed entry x_new is redelivered instead"}


def test_plan_skips_entries_moego_already_deleted(conn) -> None:
    expired = redelivery.Candidate("x_gone", BETA, "evt_gone", format_timestamp(NOW - timedelta(days=15, minutes=1)))
    kept = redelivery.Candidate("x_kept", BETA, "evt_kept", format_timestamp(NOW - timedelta(days=14, hours=23)))
    plan = bulk.plan_bulk(conn, [expired, kept], now=NOW)
    assert [c.delivery_id for c in plan.to_send] == ["x_kept"]
    assert [(c.delivery_id, why) for c, why in plan.skipped] == [("x_gone", "expired upstream (older than 15 days)")]


def test_bulk_never_asks_moego_for_expired_entries_nor_spends_the_rate_on_them(client, db, moego, fake_time) -> None:
    old = format_timestamp(NOW - timedelta(days=16))
    fresh = format_timestamp(NOW - timedelta(days=1))
    candidates = ([redelivery.Candidate(f"gone_{i:03d}", ALPHA, f"evt_gone_{i}", old) for i in range(100)]
                  + [redelivery.Candidate(f"new_{i:03d}", ALPHA, f"evt_new_{i}", fresh) for i in range(100)])
    plan = bulk.plan_bulk(db, candidates, now=NOW)
    result = _bulk(client, db, fake_time, plan)
    assert result.summary == "100 sent, 0 failed, 100 skipped"
    assert {d for _, d, _ in moego.calls} == {f"new_{i:03d}" for i in range(100)}
    assert fake_time.sleeps == []  # 100 sends fit the 100-a-minute rate: the skipped ones took none of it
    skipped = [r for r in audit(db) if r["outcome"] == "skipped"]
    assert len(skipped) == 100 and {r["error"] for r in skipped} == {"expired upstream (older than 15 days)"}
    assert {r["batch_id"] for r in skipped} == {"b1"}


def _plan(n_alpha: int, n_beta: int) -> bulk.BulkPlan:
    make = lambda hook, i: redelivery.Candidate(f"{hook}_{i:03d}", hook, f"evt_{hook}_{i}", "2026-11-20T00:00:00.000000Z")
    return bulk.BulkPlan(tuple([make(ALPHA, i) for i in range(n_alpha)] + [make(BETA, i) for i in range(n_beta)]), ())


def _bulk(client, db, fake_time, plan, **kwargs) -> bulk.BulkResult:
    limiter = ratelimit.RateLimiter(100, 60.0, clock=fake_time.monotonic)
    return bulk.bulk_redeliver(client, db, plan, batch_id="b1", limiter=limiter, sleep=fake_time.sleep,
                                  clock=fake_time.now, **kwargs)


def test_bulk_keeps_each_webhook_within_its_rate(client, db, moego, fake_time) -> None:
    progress: list[bulk.BulkProgress] = []
    result = _bulk(client, db, fake_time, _plan(150, 50), on_progress=progress.append)
    assert result.summary == "200 sent, 0 failed, 0 skipped" and not result.cancelled
    times = {hook: [t for t, _, h in moego.calls if h == hook] for hook in (ALPHA, BETA)}
    assert len(times[ALPHA]) == 150 and max(times[BETA]) < 60.0  # beta is never stuck behind alpha
    assert sum(1 for t in times[ALPHA] if t < 60.0) == 100 and min(t for t in times[ALPHA][100:]) >= 60.0
    assert max(fake_time.sleeps) <= 0.5  # waits are sliced, so a cancel is noticed promptly
    assert any(p.waiting_s > 0 for p in progress) and progress[-1].done == 200
    rows = audit(db)
    assert Counter(r["outcome"] for r in rows) == {"sent": 200} and {r["batch_id"] for r in rows} == {"b1"}


def test_bulk_waits_out_a_429_then_retries(client, db, moego, fake_time) -> None:
    moego.answers[f"{ALPHA}_000"] = [error(429, 8, "too many pushes", **{"Retry-After": "7"})]
    result = _bulk(client, db, fake_time, _plan(2, 0))
    assert result.summary == "2 sent, 0 failed, 0 skipped"
    first_try, *_ = [t for t, d, _ in moego.calls if d == f"{ALPHA}_000"]
    retry = [t for t, d, _ in moego.calls if d == f"{ALPHA}_000"][1]
    assert retry - first_try >= 7.0
    rows = [r for r in audit(db) if r["delivery_id"] == f"{ALPHA}_000"]
    assert [r["outcome"] for r in rows] == ["sent"]  # one row per entry, updated in place


def test_bulk_stops_a_webhook_at_its_daily_quota(client, db, moego, fake_time) -> None:
    moego.answers[f"{ALPHA}_000"] = [error(429, 8, "daily quota reached", **{"Retry-After": "3600"})]
    result = _bulk(client, db, fake_time, _plan(3, 2))
    assert result.summary == "2 sent, 1 failed, 2 skipped"
    assert {d for _, d, _ in moego.calls} == {f"{ALPHA}_000", f"{BETA}_000", f"{BETA}_001"}
    skipped = [r for r in audit(db) if r["outcome"] == "skipped"]
    assert all("daily quota reached" in r["error"] for r in skipped)


def test_bulk_can_be_cancelled_and_audits_what_it_did_not_send(client, db, moego, fake_time) -> None:
    result = _bulk(client, db, fake_time, _plan(5, 0), cancelled=lambda: len(moego.calls) >= 2)
    assert result.cancelled and result.summary == "2 sent, 0 failed, 3 skipped (cancelled)"
    rows = audit(db)
    assert len(rows) == 5 and sum(r["error"] == "cancelled before sending" for r in rows) == 3


class Stop(BaseException):
    """Stands in for Streamlit stopping the script (a BaseException, like its own)."""


def test_an_interrupted_bulk_audits_the_rest_then_stops(client, db, moego, fake_time) -> None:
    def on_progress(p: bulk.BulkProgress) -> None:
        if p.sent == 3:
            raise Stop

    with pytest.raises(Stop):
        _bulk(client, db, fake_time, _plan(6, 0), on_progress=on_progress)
    rows = audit(db)
    assert Counter(r["outcome"] for r in rows) == {"sent": 3, "skipped": 3}
    assert len(moego.calls) == 3


def test_plan_skips_are_audited_with_the_batch(client, db, fake_time, conn) -> None:
    plan = bulk.plan_bulk(conn, queries.failed_candidates(conn, Filters(webhooks=(ALPHA,)), Filters().window(NOW), limit=50),
                             now=NOW)
    result = _bulk(client, db, fake_time, plan)
    assert result.count("skipped") == 2 and result.count("sent") == len(plan.to_send)
    assert {r["delivery_id"] for r in audit(db) if r["outcome"] == "skipped"} == {"dlv_r1", "dlv_r2"}


def test_send_test_event_saves_the_attempt(client, db, moego, fake_time) -> None:
    sent = trigger.send_test_event(client, db, ALPHA, event_type="PET_CREATED", clock=fake_time.now)
    assert sent.ok and sent.delivery is not None and sent.delivery.event_type == "PET_CREATED"
    assert db.execute("SELECT event_type FROM deliveries WHERE id = 'test_1'").fetchone() == ("PET_CREATED",)
    failing = trigger.send_test_event(client, db, "wh_missing", clock=fake_time.now)
    assert not failing.ok and failing.delivery is None and "NOT_FOUND" in (failing.error or "")


def test_resync_reads_the_new_attempt(db, seeded: Seed) -> None:
    attempt = FakeMoeGo(FakeTime()).attempt("re_sync_1", ALPHA)
    attempt["deliveredAt"] = format_timestamp(datetime.now(timezone.utc) - timedelta(minutes=1))

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/webhook/deliveries:list"
        return httpx.Response(200, json={"deliveries": [attempt]})

    http = make_http_client("https://openapi.example", "key", transport=httpx.MockTransport(handler))
    settings = Settings(api_key="key", base_url="https://openapi.example", db_path=seeded.path)
    with MoeGoClient(http, retry=RetryConfig(attempts=1)) as moego_client:
        lines = redelivery.resync(settings, db, [ALPHA], since=datetime.now(timezone.utc) - timedelta(minutes=5),
                               client=moego_client)
    assert len(lines) == 1 and lines[0].startswith(ALPHA) and "1 new" in lines[0]
    assert db.execute("SELECT COUNT(*) FROM deliveries WHERE id = 're_sync_1'").fetchone()[0] == 1
