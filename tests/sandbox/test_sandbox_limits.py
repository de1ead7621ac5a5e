"""Push limits: 100 a minute and 10,000 a day per webhook, for live traffic, retries, tests,
redeliveries and seeded history alike (MoeGo answers RESOURCE_EXHAUSTED past them).

The limiter's "day" is any 1,440 whole minutes and its "minute" any 60 whole seconds (see
``sandbox.limits``); the checks below count pushes in exactly such windows.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from sandbox.clock import NS_PER_DAY, NS_PER_SECOND, SandboxClock
from sandbox.events import Identity
from sandbox.history import DEMAND, FULL_SPECS, history_rows
from sandbox.limits import PER_DAY, PER_MINUTE, PushLimiter
from sandbox.model import RetryPolicyRecord, WebhookRecord
from sandbox.profiles import PROFILES
from sandbox.store import DeliveryStore
from sandbox.traffic import Dispatcher, PushLimited
from sandbox.webhooks import WebhookRegistry
from tests.conftest import free_port, start_sandbox, stop_sandbox
from tests.sandbox.conftest import list_all, seeded, ts_ns

ANCHOR = 1_751_284_680_000_000_000  # 2025-06-30T11:58:00Z, a whole minute
MINUTE_NS = 60 * NS_PER_SECOND
DAY_S = 86_400


def _max_window(counts: Counter[int], span: int) -> int:
    """The most pushes in any ``span`` consecutive buckets."""
    keys = sorted(counts)
    best = total = lo = 0
    for key in keys:
        total += counts[key]
        while keys[lo] <= key - span:
            total -= counts[keys[lo]]
            lo += 1
        best = max(best, total)
    return best


# -- the limiter ----------------------------------------------------------------------------------
def test_minute_limit_and_its_retry_after() -> None:
    limiter = PushLimiter()
    t = ANCHOR + NS_PER_SECOND // 2
    for _ in range(PER_MINUTE):
        assert limiter.acquire("w", t) == 0
    wait = limiter.acquire("w", t)
    assert wait == pytest.approx(59.5) and PushLimiter.retry_after(wait) == 60
    assert limiter.usage("w", t) == (PER_MINUTE, PER_MINUTE)  # the refused push is not counted
    assert limiter.acquire("other", t) == 0  # limits are per webhook
    assert limiter.acquire("w", t + 59 * NS_PER_SECOND) == pytest.approx(0.5)
    assert limiter.acquire("w", t + 59 * NS_PER_SECOND + NS_PER_SECOND // 2) == 0


def test_day_limit_slides_over_whole_minutes_and_stays_small() -> None:
    limiter = PushLimiter()
    step = 700_000_000  # a push every 0.7 s: ~86 a minute, under the minute limit
    for i in range(PER_DAY):
        assert limiter.acquire("w", ANCHOR + i * step) == 0
    now = ANCHOR + PER_DAY * step
    wait = limiter.acquire("w", now)
    assert wait == pytest.approx((ANCHOR + NS_PER_DAY - now) / NS_PER_SECOND)  # until the first minute leaves
    assert limiter.usage("w", now)[1] == PER_DAY
    assert limiter.acquire("w", now + 3600 * NS_PER_SECOND) > 0  # an hour later: still a full day
    first_minute = sum(1 for i in range(PER_DAY) if i * step < MINUTE_NS)
    assert limiter.acquire("w", ANCHOR + NS_PER_DAY) == 0
    assert limiter.usage("w", ANCHOR + NS_PER_DAY)[1] == PER_DAY - first_minute + 1
    # counters per bucket, not per push: a week at the limit keeps at most 60 + 1,440 of them
    busy = PushLimiter()
    usage = busy.of("w")
    for i in range(7 * PER_DAY):
        usage.try_add(ANCHOR + i * 60 * step)
        assert usage.buckets() <= 60 + 1440


# -- seeded history -------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["orders-sync", "crm-bridge", "legacy-erp"])
def test_full_volume_history_never_exceeds_the_daily_limit(label: str) -> None:
    spec = next(s for s in FULL_SPECS if s.label == label)
    webhook = WebhookRecord(
        id=f"whk_{label}",
        idx=1,
        endpoint_url=f"http://127.0.0.1:9/hooks/{label}",
        event_types=list(spec.event_types),
        created_ns=0,
        updated_ns=0,
    )
    limiter = PushLimiter()
    days = 3  # a reduced window: the full one is 15 days of the same
    rows = list(
        history_rows(
            webhook,
            PROFILES[spec.profile],
            seed_key=f"7:history:{label}",
            anchor_ns=ANCHOR,
            days=days,
            quiet_days=0,
            demand=DEMAND["full"],
            timeout_ms=30_000,
            admit=limiter.of(webhook.id).try_add,
        )
    )
    times = [r[5] for r in rows]
    assert times == sorted(times) and ANCHOR - days * NS_PER_DAY <= times[0] and times[-1] < ANCHOR
    entries: Counter[int] = Counter()
    pushes: Counter[int] = Counter()
    per_minute: Counter[int] = Counter()
    per_second: Counter[int] = Counter()
    for r in rows:
        cost = 1 + r[9]  # the first attempt and its retries
        day = (ANCHOR - 1 - r[5]) // NS_PER_DAY  # 0 = the last 24 h
        entries[day] += 1
        pushes[day] += cost
        per_minute[r[5] // MINUTE_NS] += cost
        per_second[r[5] // NS_PER_SECOND] += cost
    assert sorted(entries) == list(range(days))
    assert max(entries.values()) <= PER_DAY and max(pushes.values()) <= PER_DAY
    assert _max_window(per_minute, 1440) <= PER_DAY  # any day, not only the generated ones
    assert _max_window(per_second, 60) <= PER_MINUTE
    # full volume means at the limit: once the first day has filled the window, days are full
    assert min(pushes[d] for d in range(days - 1)) >= 0.99 * PER_DAY
    # the limiter is left holding the last day: the sandbox starts with it counted
    assert 0.99 * PER_DAY <= limiter.usage(webhook.id, ANCHOR)[1] <= PER_DAY


# -- live deliveries and retries ------------------------------------------------------------------
async def _held_back_and_waiting() -> None:
    clock = SandboxClock()
    identity = Identity.from_seed(7)
    registry = WebhookRegistry(seed=7, company_id=identity.company_id)
    store = DeliveryStore()
    dispatcher = Dispatcher(
        store=store,
        registry=registry,
        identity=identity,
        clock=clock,
        limiter=PushLimiter(per_day=2),
        timeout_s=2.0,
        seed=7,
        limit_poll_s=0.02,
    )
    webhook = registry.add(
        WebhookRecord(
            id=registry.new_id(),
            idx=0,
            endpoint_url=f"http://127.0.0.1:{free_port()}/refused",  # a retryable failure
            event_types=["HEALTH_CHECK"],
            created_ns=clock.now_ns(),
            updated_ns=clock.now_ns(),
            retry_policy=RetryPolicyRecord(max_retries=3, initial_interval_ms=10, backoff_factor=1),
        )
    )
    try:
        first = await dispatcher.deliver(webhook, dispatcher.new_event("HEALTH_CHECK"))  # push 1
        assert not first.success and first.error.endswith("connection refused")
        await asyncio.sleep(0.5)  # retry 1 is push 2; retry 2 must wait: the day is full
        assert dispatcher.attempts_by_webhook[webhook.id] == 2
        assert store.get(first.key).retry_count == 1
        with pytest.raises(PushLimited) as held:
            await dispatcher.deliver(webhook, dispatcher.new_event("HEALTH_CHECK"))
        assert held.value.retry_after > DAY_S - 120
        assert store.count() == 1 and dispatcher.attempts_by_webhook[webhook.id] == 2  # not sent, not logged
        clock.advance(DAY_S)  # a day later the waiting retry goes
        deadline = time.monotonic() + 5
        while store.get(first.key).retry_count < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert store.get(first.key).retry_count >= 2
    finally:
        await dispatcher.aclose()
        store.close()


def test_live_delivery_past_the_limit_is_held_back_and_retries_wait() -> None:
    asyncio.run(_held_back_and_waiting())


# -- over HTTP ------------------------------------------------------------------------------------
def test_daily_limit_for_tests_redeliveries_emits_and_live_traffic() -> None:
    limit = 20  # --daily-limit: a small count reaches the daily limit fast (tests only)
    sandbox = start_sandbox("--daily-limit", str(limit), "--history-days", "0")
    try:
        with sandbox.client() as api:
            # /hooks/ok answers at once, unlike the seeded endpoints' simulated latency
            body = {"endpointUrl": f"{sandbox.receiver_url}/hooks/ok", "eventTypes": ["HEALTH_CHECK"]}
            hook = api.post("/v1/webhooks", json=body).json()
            test_url = f"/v1/webhooks/{hook['id']}/test"
            for _ in range(limit):
                assert api.post(test_url, json={}).status_code == 200
            r = api.post(test_url, json={})
            assert r.status_code == 429 and r.json()["code"] == 8
            assert DAY_S - 120 <= int(r.headers["Retry-After"]) <= DAY_S
            logged = list_all(api, hook["id"])
            assert len(logged) == limit  # the refused test logged nothing
            r = api.post(
                f"/v1/webhooks/deliveries/{logged[0]['id']}/redeliver", params={"webhookId": hook["id"]}
            )
            assert r.status_code == 429 and r.json()["code"] == 8 and int(r.headers["Retry-After"]) > 0
            with httpx.Client(base_url=sandbox.base_url, timeout=15, trust_env=False) as admin:
                r = admin.post("/_sandbox/emit", json={"webhookId": hook["id"]})
                assert r.status_code == 429 and "Retry-After" in r.headers
                # live traffic holds back too, and so do automatic retries (legacy-erp fails a lot)
                admin.post("/_sandbox/traffic", json={"rate": 6000}).raise_for_status()
                deadline = time.monotonic() + 15
                while not _all_full(stats := sandbox.stats(), limit) and time.monotonic() < deadline:
                    time.sleep(0.1)
                admin.post("/_sandbox/traffic", json={"paused": True}).raise_for_status()
            assert _all_full(stats, limit), stats
            stats = sandbox.stats()
            for webhook in stats["webhooks"].values():
                assert webhook["pushes"] <= limit, webhook  # real POSTs: first attempts and retries
                assert webhook["pushesLastDay"] <= limit and webhook["deliveries"] <= limit, webhook
            assert stats["webhooks"][hook["id"]]["deliveries"] == limit
            assert stats["webhooks"][hook["id"]]["pushes"] == limit
            assert stats["received"] <= limit * len(stats["webhooks"])
            sandbox.advance_clock(DAY_S)  # the window slides with the sandbox clock
            assert api.post(test_url, json={}).status_code == 200
    finally:
        code, stderr = stop_sandbox(sandbox)
    assert code == 0 and "Traceback" not in stderr, stderr


def _all_full(stats: dict, limit: int) -> bool:
    """Every active webhook has used its day, and live events have been held back."""
    active = [w for w in stats["webhooks"].values() if w["isActive"]]
    return stats["heldBack"] >= 20 and all(w["pushesLastDay"] >= limit for w in active)


def test_seeded_history_counts_toward_the_daily_limit() -> None:
    limit = 150  # under the demo's ~320 deliveries a day: the seeded history is capped at it
    sandbox = start_sandbox("--daily-limit", str(limit))
    try:
        with sandbox.client() as api:
            orders = seeded(api, "orders-sync")
            used = sandbox.stats()["webhooks"][orders["id"]]["pushesLastDay"]
            assert limit - 5 <= used <= limit  # the last day of history is counted (it was 0)
            for label in ("orders-sync", "legacy-erp"):
                per_minute: Counter[int] = Counter()
                for d in list_all(api, seeded(api, label)["id"]):
                    per_minute[ts_ns(d["deliveredAt"]) // MINUTE_NS] += 1 + d.get("retryCount", 0)
                assert _max_window(per_minute, 1440) <= limit, label
            test_url = f"/v1/webhooks/{orders['id']}/test"
            for _ in range(limit - used + 10):  # the slots left, and a few that free up meanwhile
                r = api.post(test_url, json={})
                if r.status_code != 200:
                    break
            assert r.status_code == 429 and r.json()["code"] == 8 and int(r.headers["Retry-After"]) >= 1
            assert limit - 5 <= sandbox.stats()["webhooks"][orders["id"]]["pushesLastDay"] <= limit
            newest = list_all(api, orders["id"])[0]
            r = api.post(
                f"/v1/webhooks/deliveries/{newest['id']}/redeliver", params={"webhookId": orders["id"]}
            )
            assert r.status_code == 429 and "Retry-After" in r.headers
    finally:
        stop_sandbox(sandbox)
