"""A sync's pages committed a few at a time: readers see them while MoeGo is slow, a stop commits them."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import httpx
import pytest

from collectors import archive
from collectors.client import MoeGoClient, RawDeliveryPage, RetryConfig, make_http_client
from collectors.collect import collect
from collectors.config import Settings

from .fake_moego import BASE_URL, KEY, FakeMoeGo, utc

NOW = utc(2026, 11, 29, 12)


@pytest.fixture
def fake() -> FakeMoeGo:
    moego = FakeMoeGo(now=NOW)
    moego.add_webhook("whk_a")
    moego.add_webhook("whk_b")
    moego.add_deliveries("whk_a", 700)
    moego.add_deliveries("whk_b", 300)
    return moego


def committed_rows(settings: Settings) -> int:
    """Rows another connection (the dashboard) sees."""
    if not settings.db_path.exists():
        return 0
    try:
        with archive.open_archive(settings.db_path, readonly=True) as reader:
            return reader.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    except Exception:  # the archive may not have its tables yet
        return 0


class SlowAt:
    """The fake's answers, except that ListWebhookDeliveries calls from the ``n``-th on wait until ``release`` is set
    (so every worker of a pass ends up waiting)."""

    def __init__(self, fake: FakeMoeGo, n: int) -> None:
        self.fake, self.n, self.calls = fake, n, 0
        self.waiting, self.release = threading.Event(), threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/webhook/deliveries:list":
            self.calls += 1
            if self.calls >= self.n:
                self.waiting.set()
                self.release.wait(60)
        return self.fake.handle(request)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_pages_saved_while_moego_is_slow_are_visible_before_its_next_page(fake, tmp_path, concurrency):
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db", page_size=50,
                        concurrency=concurrency)
    slow = SlowAt(fake, 8)  # both retention-edge slices, then a few pages of the full syncs, then MoeGo stalls
    http = make_http_client(BASE_URL, KEY, transport=httpx.MockTransport(slow))
    client = MoeGoClient(http, retry=RetryConfig(attempts=1, base_delay=0, max_delay=0), sleep=lambda s: None)
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(collect(settings, client=client, now=NOW)))
    thread.start()
    try:
        assert slow.waiting.wait(30)
        seen_before = committed_rows(settings)
        # The pages before the stalled call were saved in a batch that is not full: the writer commits it
        # once it is BATCH_AGE_S old, without waiting for MoeGo's next page.
        deadline = time.monotonic() + 30
        while committed_rows(settings) <= seen_before and time.monotonic() < deadline:
            time.sleep(0.02)
        visible_while_stalled = committed_rows(settings)
        assert not slow.release.is_set() and thread.is_alive()
    finally:
        slow.release.set()
        thread.join(60)
    assert visible_while_stalled > seen_before
    (result,) = outcome
    assert result.ok and result.new == committed_rows(settings) == 1000


def test_a_stop_commits_every_page_saved_and_the_next_pass_doubles_nothing(fake, tmp_path):
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db", page_size=50, concurrency=1)
    stop = threading.Event()
    with fake.client() as client:
        first = collect(settings, client=client, now=NOW, stop=stop,
                        progress=lambda p: stop.set() if p.pages >= 3 else None)
        second = collect(dataclasses.replace(settings), client=client, now=NOW)
    assert first.outcome == "interrupted"
    # Everything the first pass counted is committed (its batch was committed when it stopped) ...
    with archive.open_archive(settings.db_path, readonly=True) as reader:
        runs = reader.execute("SELECT outcome, new_rows FROM collector_runs ORDER BY id").fetchall()
        ids = reader.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM deliveries").fetchone()
    assert runs[0] == ("interrupted", first.new) and first.new > 0
    # ... and the second pass adds exactly the rest: nothing lost, nothing doubled.
    assert second.ok and first.new + second.new == 1000 == ids[0] == ids[1]


def test_one_webhook_at_a_time_requests_the_next_page_while_this_one_is_parsed(fake, tmp_path, monkeypatch):
    """A webhook's pages are asked for one after the other (page tokens), so whatever the reading thread does
    between two requests bounds the pass: it only fetches and decodes, the entries are parsed on the writer's side
    while the next page is on its way. Parsing waits here until the next request has reached MoeGo; if the
    reading thread parsed, the next request could not leave before the parse ended, and every wait would time out."""
    asked: list[str] = []
    seen = threading.Condition()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/webhook/deliveries:list":
            with seen:
                asked.append(json.loads(request.content).get("pagination", {}).get("pageToken", ""))
                seen.notify_all()
        return fake.handle(request)

    overlapped: list[bool] = []
    parse = RawDeliveryPage.parsed

    def parsed_after_the_next_request(page: RawDeliveryPage):
        if page.next_page_token and len(overlapped) < 4:
            with seen:
                overlapped.append(seen.wait_for(lambda: page.next_page_token in asked, timeout=5))
        return parse(page)

    monkeypatch.setattr(RawDeliveryPage, "parsed", parsed_after_the_next_request)
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db", page_size=10, concurrency=1)
    with MoeGoClient(make_http_client(BASE_URL, KEY, transport=httpx.MockTransport(handler)),
                     retry=RetryConfig(attempts=1)) as client:
        result = collect(settings, client=client, now=NOW)
    assert result.outcome == "ok" and committed_rows(settings) == 1_000
    assert overlapped == [True] * 4
