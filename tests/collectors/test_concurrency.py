"""Several webhooks at once against the sandbox over loopback: a kill mid-pass, and a 429 that pauses everyone."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from collectors.client import deadline_transport, make_client
from collectors.collect import collect
from collectors.config import load_settings
from collectors.pacing import Pacer
from tests.conftest import SandboxHandle, running_sandbox

from .conftest import (archived_by_webhook, assert_archive_consistent, assert_killed_backfill_resumes, db_rows,
                       listed_ids, sandbox_now, sandbox_settings, writing)

DELIVERIES = "/v1/webhook/deliveries"


@pytest.fixture(scope="module")
def busy_sandbox() -> Iterator[SandboxHandle]:
    """5 webhooks over 3 days, each with a dense hour of 1,500 more entries (several pages per chunk each)."""
    with running_sandbox("--history-days", "3") as handle:
        for webhook_id in sorted(listed_ids(handle)):
            handle.generate(webhook_id, 1500, spread_seconds=3600)
        yield handle


def webhooks_archived(db_path: Path) -> set[str]:
    """Webhooks with committed rows right now."""
    if not db_path.exists():
        return set()
    try:
        return {r[0] for r in db_rows(db_path, "SELECT DISTINCT webhook_id FROM deliveries")}
    except Exception:  # the archive may not have its tables yet
        return set()


def test_a_concurrent_pass_killed_mid_way_resumes_with_nothing_lost_or_doubled(busy_sandbox, tmp_path):
    db_path = tmp_path / "a.db"
    # Killed with pages of several webhooks committed and a batch of others being written (the write lock held):
    # the writer commits the four workers' pages together, a few at a time (collectors.fanout).
    assert_killed_backfill_resumes(db_path, busy_sandbox, ("--chunk", "1d", "--concurrency", "4"),
                                   ready=lambda: len(webhooks_archived(db_path)) >= 2 and writing(db_path))


def test_one_at_a_time_and_four_at_once_archive_the_same_rows(busy_sandbox, tmp_path):
    now = sandbox_now(busy_sandbox)
    one = collect(sandbox_settings(busy_sandbox, tmp_path / "one.db", concurrency=1), now=now)
    four = collect(sandbox_settings(busy_sandbox, tmp_path / "four.db", concurrency=4), now=now)

    assert one.ok and four.ok, (one.summary_lines, four.summary_lines)
    assert (one.new, one.pages) == (four.new, four.pages)
    columns = "id, webhook_id, event_type, delivered_at, success, response_status, retry_count, status_class"
    assert (db_rows(tmp_path / "one.db", f"SELECT {columns} FROM deliveries ORDER BY id")
            == db_rows(tmp_path / "four.db", f"SELECT {columns} FROM deliveries ORDER BY id"))
    # Coverage ends where each chunk was read (the clock moves), but both are one interval per webhook, no gap.
    per_webhook = "SELECT webhook_id, COUNT(*) FROM coverage GROUP BY webhook_id ORDER BY 1"
    assert db_rows(tmp_path / "one.db", per_webhook) == db_rows(tmp_path / "four.db", per_webhook)
    assert {n for _, n in db_rows(tmp_path / "four.db", per_webhook)} == {1}
    assert_archive_consistent(tmp_path / "four.db")


class Recording(httpx.BaseTransport):
    """The client's own transport, noting when each request starts (``time.monotonic()``) and how it was answered."""

    def __init__(self) -> None:
        self.inner = deadline_transport()
        self.calls: list[tuple[float, str, int]] = []  # (started, path, status)
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = self.inner.handle_request(request)
        with self._lock:
            self.calls.append((started, request.url.path, response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("retry_after", [1, None])
def test_a_429_pauses_every_worker_and_lowers_the_concurrency(busy_sandbox, tmp_path, caplog, retry_after):
    settings = sandbox_settings(busy_sandbox, tmp_path / "a.db", concurrency=4)
    transport = Recording()
    committed = []

    def progress(p) -> None:  # a few pages in, with four webhooks being read: MoeGo starts limiting
        committed.append(p)
        if len(committed) == 6:
            busy_sandbox.faults(429, count=3, retry_after=retry_after, paths=DELIVERIES)

    caplog.set_level(logging.INFO, logger="moego_monitor.pacing")
    try:
        with make_client(settings, transport=transport) as client:
            result = collect(settings, client=client, now=sandbox_now(busy_sandbox), progress=progress)
    finally:
        busy_sandbox.clear_faults()

    assert result.ok, result.summary_lines
    assert archived_by_webhook(settings.db_path) == listed_ids(busy_sandbox)  # everything, once (ids are the key)
    assert_archive_consistent(settings.db_path)
    limited = [c for c in transport.calls if c[2] == 429]
    assert len(limited) == 3
    pacer = result.pacer
    assert pacer is not None and pacer.pauses and pacer.lowest < 4
    # While the gate was closed no call was started, except those already let through before it closed
    # (at most one per other worker): the calls that MoeGo saw in each pause.
    for pause in pacer.pauses:
        started = [c for c in transport.calls if pause.start < c[0] < pause.end]
        assert len(started) <= 3, (pause, started)
    # Each limited call was retried only after its pause: the next call of the pass came after the gate opened.
    first = pacer.pauses[0]
    assert any(c[0] >= first.end for c in transport.calls)
    lines = [r.getMessage() for r in caplog.records if r.name == "moego_monitor.pacing"]
    assert any("every worker pauses" in line and "concurrency 4 -> 2" in line for line in lines), lines
    assert any(line.startswith("MoeGo limited the rate") for line in result.summary_lines)


def test_the_concurrency_setting_follows_one_rule_for_flag_and_environment():
    assert load_settings({}).concurrency == 4  # MoeGo itself: round trips to hide
    # A MoeGo on this host (the sandbox) shares our CPUs and has no round trip to hide: one at a time.
    for local in ("http://127.0.0.1:8787", "http://localhost:8787", "http://[::1]:8787"):
        assert load_settings({"MOEGO_BASE_URL": local}).concurrency == 1, local
    assert load_settings({"MOEGO_BASE_URL": "http://127.0.0.1:8787", "MOEGO_CONCURRENCY": "4"}).concurrency == 4
    assert load_settings({}, base_url="http://127.0.0.1:8787", concurrency="3").concurrency == 3
    assert load_settings({"MOEGO_CONCURRENCY": "7"}).concurrency == 7
    assert load_settings({"MOEGO_CONCURRENCY": "7"}, concurrency="2").concurrency == 2


# -- the pacer alone, on a clock of its own -----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_pacer_halves_on_429_once_per_pause_and_grows_back_one_at_a_time():
    clock = FakeClock()
    pacer = Pacer(8, grow_after=3, clock=clock)
    assert pacer.limited(2.0) == 2.0
    assert pacer.limit == 4
    assert pacer.limited(1.0) == 2.0 - 0.0  # a second 429 within the same pause neither halves nor shortens it
    assert pacer.limit == 4 and len(pacer.pauses) == 1
    pacer.acquire(end=clock.now + 60, sleep=clock.sleep)  # waits the pause out
    assert clock.now == pytest.approx(102.0)
    pacer.release(ok=True)
    for _ in range(5):
        pacer.acquire(end=clock.now + 60, sleep=clock.sleep)
        pacer.release(ok=True)
    assert pacer.limit == 6  # six successes in a row: two more
    assert pacer.lowest == 4


def test_a_pacer_without_retry_after_backs_off_exponentially_with_bounded_jitter():
    clock = FakeClock()
    pacer = Pacer(4, base_delay=0.5, max_delay=4.0, clock=clock)
    waits = []
    for _ in range(6):
        waits.append(pacer.limited(None))
        clock.sleep(waits[-1] + 0.001)  # the pause ends; MoeGo limits the very next call again
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0 <= w <= cap for w, cap in zip(waits, caps)), waits
    assert pacer.limit == 1 and len(pacer.pauses) == 6


def test_a_pacer_refuses_to_wait_past_the_calls_deadline():
    from collectors.pacing import GateClosedPastDeadline

    clock = FakeClock()
    pacer = Pacer(2, clock=clock)
    pacer.limited(30.0)
    with pytest.raises(GateClosedPastDeadline):
        pacer.acquire(end=clock.now + 10, sleep=clock.sleep)
    assert clock.now == 100.0  # it did not wait in vain


def test_a_call_that_would_wait_past_its_deadline_for_the_gate_fails_at_once_in_one_line():
    from collectors.client import MoeGoClient, ResourceExhausted, make_http_client

    sent = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"webhooks": []})

    with MoeGoClient(make_http_client("http://moego.test", "key", transport=httpx.MockTransport(answer)),
                     deadline_s=1.0) as client:
        client.pacer = Pacer(4)
        client.pacer.limited(30.0)  # another worker was told to wait 30 s
        with pytest.raises(ResourceExhausted) as caught:
            list(client.list_webhooks())
    assert sent == []  # nothing was sent while the gate was closed
    assert str(caught.value) == ("MoeGo is limiting ListWebhooks (RESOURCE_EXHAUSTED: another call of this pass was told "
                                 "to wait past this call's deadline): try again later")
