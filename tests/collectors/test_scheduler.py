"""The scheduler in-process against an in-memory MoeGo: passes repeat, a failed pass is logged, stop ends cleanly."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from collectors.client import MoeGoClient, RetryConfig, make_http_client
from collectors.config import Settings
from collectors.scheduler import default_jitter, run_schedule

from .conftest import db_rows
from .fake_moego import BASE_URL, KEY, FakeMoeGo, error


@pytest.fixture
def fake() -> FakeMoeGo:
    moego = FakeMoeGo(now=datetime.now(timezone.utc))
    moego.add_webhook("whk_a")
    moego.add_deliveries("whk_a", 120)
    return moego


def finished_runs(settings: Settings) -> list[tuple]:
    if not settings.db_path.exists():
        return []
    try:
        return db_rows(settings.db_path, "SELECT id, trigger, outcome, error FROM collector_runs "
                                         "WHERE outcome != 'running' ORDER BY id")
    except Exception:
        return []


def stop_when(stop: threading.Event, condition, timeout: float = 20.0) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            time.sleep(0.02)
        stop.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_passes_repeat_and_a_failed_pass_is_logged_and_the_next_one_runs(fake, tmp_path, caplog):
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db")
    fake.answer_call(1, error(400, 3, "deliveryTime: bad interval"))  # the first pass fails
    stop = threading.Event()
    # Generous: on a loaded machine three passes can take long; a schedule that does not repeat
    # fails the list below, whatever the time (no timing assertion here).
    watcher = stop_when(stop, lambda: len(finished_runs(settings)) >= 3, timeout=120.0)
    caplog.set_level(logging.INFO, logger="moego_monitor.schedule")

    with fake.client() as client:
        run_schedule(settings, every=timedelta(seconds=0.3), stop=stop, client=client)
    watcher.join()

    runs = finished_runs(settings)
    assert [r[1:3] for r in runs[:3]] == [("schedule", "failed"), ("schedule", "ok"), ("schedule", "ok")]
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "moego_monitor.schedule"]
    assert messages[0][0] == "ERROR" and messages[0][1].startswith("pass #1 failed: 1 webhook, 0 pages")
    assert "MoeGo refused ListWebhookDeliveries (INVALID_ARGUMENT, HTTP 400)" in messages[0][1]
    assert messages[1][0] == "INFO" and messages[1][1].startswith("pass #2 ok: 1 webhook, ")
    assert "120 new" in messages[1][1]
    assert all("\n" not in m and KEY not in m for _, m in messages)


def test_stop_during_a_pass_ends_it_between_pages_as_interrupted(fake, tmp_path):
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db", page_size=10)
    stop = threading.Event()
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        response = fake.handle(request)
        calls.append(request.url.path)
        if calls.count("/v1/webhook/deliveries:list") == 7:
            stop.set()  # Ctrl-C arrives while the seventh page is in flight
        return response

    http = make_http_client(BASE_URL, KEY, transport=httpx.MockTransport(handler))
    with MoeGoClient(http, retry=RetryConfig(attempts=1)) as client:
        run_schedule(settings, every=timedelta(minutes=10), chunk=timedelta(days=15), stop=stop, client=client)

    assert [r[1:3] for r in finished_runs(settings)] == [("schedule", "interrupted")]
    # Pages are read ahead of the writer (collectors.prefetch, at most 2 waiting and 1 in flight), so when
    # the seventh request is in flight at least four pages were taken: each page taken was committed whole
    # (the short slice at the retention edge, twice: in the edge pass and as the full sync's overlap, then
    # pages of ten), the pages fetched ahead were not, and the run counts exactly what was committed.
    ((archived,),) = db_rows(settings.db_path, "SELECT COUNT(*) FROM deliveries")
    ((pages, new_rows),) = db_rows(settings.db_path, "SELECT pages, new_rows FROM collector_runs")
    assert 4 <= pages <= 6 and new_rows == archived and archived >= 20
    assert db_rows(settings.db_path, "SELECT COUNT(*) FROM sync_state WHERE page_token IS NOT NULL") == [(1,)]


def test_a_stop_set_before_start_returns_at_once(tmp_path):
    stop = threading.Event()
    stop.set()
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db")
    # Returning at once, not after the first 10-minute wait; the bound is generous for a loaded machine.
    runner = threading.Thread(target=run_schedule, args=(settings,),
                              kwargs={"every": timedelta(minutes=10), "stop": stop}, daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "run_schedule kept running although stop was set before it started"
    assert not settings.db_path.exists()


def test_default_jitter_is_a_tenth_of_the_interval_capped_at_5_minutes():
    assert default_jitter(timedelta(minutes=10)) == timedelta(minutes=1)
    assert default_jitter(timedelta(hours=2)) == timedelta(minutes=5)
