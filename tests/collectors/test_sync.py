"""The sync against an in-memory MoeGo (httpx.MockTransport): completeness, idempotence, resume, failures."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import httpx
import pytest

from collectors import archive
from collectors.client import MoeGoClient, RetryConfig, make_http_client
from collectors.config import Settings
from collectors.archive.coverage import RETENTION, gaps, load_intervals
from collectors.models import format_timestamp
from collectors.archive.runs import CollectorBusy, collector_lock
from collectors.collect import collect
from collectors.sync import SETTLE, sync_webhook

from .fake_moego import BASE_URL, KEY, FakeMoeGo, error, utc

NOW = utc(2026, 11, 29, 12)
#: Long chunks, so that a chunk spans several pages and a resume position is mid-chunk.
LONG = timedelta(days=5)
CONTENT = ("id, webhook_id, event_type, event_id, request_headers, request_body, response_status, delivered_at, "
           "duration_ms, success, error, retry_count, status_class, error_class, first_seen_at")


@pytest.fixture
def fake() -> FakeMoeGo:
    moego = FakeMoeGo(now=NOW)
    moego.add_webhook("whk_a")
    moego.add_webhook("whk_b", active=False)  # inactive: its log is still there, still collected
    moego.add_deliveries("whk_a", 700)
    moego.add_deliveries("whk_b", 300)
    return moego


@pytest.fixture
def settings(tmp_path) -> Settings:
    # One webhook at a time: these tests follow the exact order of calls and pages (several at once:
    # test_collect_sandbox.py and test_concurrency.py).
    return Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "archive.db", page_size=50, concurrency=1)


@pytest.fixture
def client(fake):
    with fake.client() as moego:
        yield moego


def stopping_client(fake: FakeMoeGo, stop: threading.Event, *, at_call: int) -> MoeGoClient:
    """The fake's client, setting ``stop`` when its ``at_call``-th ListWebhookDeliveries call arrives: the sync
    stops at its next page boundary, in the middle of a chunk (a stop set from ``progress`` would come only
    when a batch of pages is committed, perhaps the chunk's last). The read-ahead holds at most two pages, so
    when a chunk's call ``k + 3`` arrives the sync has taken its call ``k``'s page (and saves it before it looks
    at ``stop``). With these fixtures calls 1-3 are the retention-edge slices (whk_a, whk_b, whk_a again) and
    calls 4-8 whk_a's first long chunk: ``at_call=7`` stops with its first page saved, mid-chunk."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/webhook/deliveries:list" and fake.deliveries_calls + 1 >= at_call:
            stop.set()
        return fake.handle(request)
    http = make_http_client(BASE_URL, KEY, transport=httpx.MockTransport(handle))
    return MoeGoClient(http, retry=RetryConfig(attempts=2, base_delay=0, max_delay=0), sleep=lambda s: None)


def rows(settings: Settings, columns: str = CONTENT) -> list[tuple]:
    db = archive.connect(settings.db_path)
    try:
        return db.execute(f"SELECT {columns} FROM deliveries ORDER BY id").fetchall()
    finally:
        db.close()


def archived_ids(settings: Settings) -> list[str]:
    return [r[0] for r in rows(settings, "id")]


def query(settings: Settings, sql: str, *params) -> list[tuple]:
    db = archive.connect(settings.db_path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def test_backfill_archives_every_entry_of_every_webhook_once(fake, settings, client):
    result = collect(settings, client=client, now=fake.now)

    assert result.ok and result.outcome == "ok"
    assert archived_ids(settings) == sorted(fake.live_ids())
    assert result.new == 1000 and result.updated == 0
    assert {r.webhook_id for r in result.webhooks} == {"whk_a", "whk_b"}
    runs = query(settings, "SELECT outcome, trigger, webhooks, pages, new_rows, updated_rows, error FROM collector_runs")
    assert runs == [("ok", "collect", 2, result.pages, 1000, 0, None)]
    # The whole retention window is covered up to the settle margin before the run, and the summary says so.
    db = archive.connect(settings.db_path)
    try:
        for webhook_id in ("whk_a", "whk_b"):
            covered = load_intervals(db, webhook_id)
            assert gaps(covered, fake.now - RETENTION + timedelta(seconds=5), fake.now - SETTLE) == []
            # the last minute before reading may still get late entries: not claimed as archived
            assert fake.now - SETTLE <= covered[-1].end < fake.now - SETTLE + timedelta(seconds=30)
    finally:
        db.close()
    line = next(r for r in result.webhooks if r.webhook_id == "whk_a").summary_line()
    assert line.startswith("whk_a receiver.example/whk_a: 700 new, 0 updated, ")
    assert line.endswith(" → now")
    # Secrets never reach the archive: signature headers redacted, webhook secret fingerprinted.
    assert "c2lnbmF0dXJl" not in str(rows(settings, "request_headers"))
    assert "s3cret-token" not in str(query(settings, "SELECT * FROM webhooks"))


def test_a_second_run_changes_nothing(fake, settings, client):
    collect(settings, client=client, now=fake.now)
    before = rows(settings)
    fake.advance(timedelta(minutes=5))
    again = collect(settings, client=client, now=fake.now)

    assert again.ok and (again.new, again.updated) == (0, 0)
    assert rows(settings) == before
    # It read only the overlap, not the 15 days again.
    assert all(r.window.end - r.window.start <= settings.overlap + timedelta(minutes=6) for r in again.webhooks)


def test_entries_changed_by_retries_are_updated_within_the_overlap(fake, settings, client):
    collect(settings, client=client, now=fake.now)
    recent = max((e for e in fake.entries.values() if e["webhookId"] == "whk_a"), key=lambda e: e["deliveredAt"])
    old = min((e for e in fake.entries.values() if e["webhookId"] == "whk_a"), key=lambda e: e["deliveredAt"])
    recent.update({"retryCount": 3, "responseStatus": 500, "error": "HTTP 500 after 3 retries"})
    recent.pop("success", None)
    old["retryCount"] = 1  # older than the overlap: not re-read (MoeGo's retries are long over by then)
    fake.advance(timedelta(minutes=5))

    again = collect(settings, client=client, now=fake.now)

    assert (again.new, again.updated) == (0, 1)
    assert query(settings, "SELECT success, retry_count, response_status, error_class FROM deliveries WHERE id = ?",
                 recent["id"]) == [(0, 3, 500, "5xx")]
    hour = recent["deliveredAt"][:13]
    assert query(settings, "SELECT SUM(deliveries) FROM delivery_hourly WHERE webhook_id = 'whk_a' AND hour = ? "
                           "AND success = 0", hour) == [(1,)]


def test_stopped_between_pages_then_resumed_loses_nothing_and_counts_nothing_twice(fake, settings, client):
    stop = threading.Event()
    seen = []

    first = collect(settings, client=stopping_client(fake, stop, at_call=7), now=fake.now, stop=stop,
                    progress=seen.append, chunk=LONG)
    assert first.outcome == "interrupted" and not first.ok
    # Both webhooks' slices at the retention edge first, whk_a's again, then 1 to 4 pages of its first long chunk
    # (calls 4-7), every one committed and reported once.
    assert 2 + 2 <= first.pages <= 2 + 5 and first.pages == 2 + len(seen)
    assert len(archived_ids(settings)) == first.new
    state = query(settings, "SELECT webhook_id, chunk_start, chunk_end, page_token FROM sync_state WHERE page_token IS NOT NULL")
    assert len(state) == 1  # the resume position was committed with the last page
    assert query(settings, "SELECT outcome FROM collector_runs") == [("interrupted",)]

    fake.advance(timedelta(minutes=2))
    second = collect(settings, client=client, now=fake.now, chunk=LONG)
    assert second.ok
    assert any(r.resumed for r in second.webhooks)
    assert archived_ids(settings) == sorted(fake.live_ids())
    assert first.new + second.new == len(fake.live_ids())
    assert query(settings, "SELECT COUNT(*) FROM sync_state WHERE page_token IS NOT NULL") == [(0,)]


def test_a_refused_resume_token_restarts_that_chunk_from_its_first_page(fake, settings, client):
    stop = threading.Event()
    calls = []
    collect(settings, client=stopping_client(fake, stop, at_call=7), now=fake.now, stop=stop, chunk=LONG,
            progress=calls.append)
    ((token,),) = query(settings, "SELECT page_token FROM sync_state WHERE page_token IS NOT NULL")
    fake.refused_tokens.add(token)
    fake.requests.clear()

    result = collect(settings, client=client, now=fake.now + timedelta(minutes=1), chunk=LONG)

    assert result.ok
    sent = [r["body"]["pagination"].get("pageToken") for r in fake.requests if r["body"].get("webhookId") == "whk_a"]
    assert sent[:2] == [token, None]  # refused, then the same chunk from its first page
    assert archived_ids(settings) == sorted(fake.live_ids())


def test_a_malformed_page_commits_nothing_and_the_next_run_resumes(fake, settings, client):
    # Calls 1-2: each webhook's slice at the retention edge; then whk_a in full (ties go by id): the
    # edge slice again (overlap), two pages of the next chunk, then garbage.
    fake.answer_call(6, httpx.Response(200, json={"deliveries": [{"id": "x", "deliveredAt": "yesterday"}]}))
    result = collect(settings, client=client, now=fake.now, chunk=LONG)

    assert result.outcome == "failed"
    failed = [r for r in result.webhooks if r.outcome == "failed"]
    assert [r.webhook_id for r in failed] == ["whk_a"]
    assert "malformed" in failed[0].error and "\n" not in failed[0].error
    assert next(r for r in result.webhooks if r.webhook_id == "whk_b").ok  # the other webhook still synced
    assert failed[0].pages == 4
    assert len(query(settings, "SELECT id FROM deliveries WHERE webhook_id = 'whk_a'")) == failed[0].new >= 100
    assert query(settings, "SELECT id FROM deliveries WHERE id = 'x'") == []
    ((outcome, error_text),) = query(settings, "SELECT outcome, error FROM collector_runs")
    assert outcome == "failed" and error_text.startswith("whk_a: MoeGo's answer to ListWebhookDeliveries is malformed")
    assert query(settings, "SELECT last_error IS NOT NULL FROM sync_state WHERE webhook_id = 'whk_a'") == [(1,)]

    again = collect(settings, client=client, now=fake.now + timedelta(minutes=1), chunk=LONG)
    assert again.ok
    assert next(r for r in again.webhooks if r.webhook_id == "whk_a").resumed
    assert archived_ids(settings) == sorted(fake.live_ids())


def test_wrong_key_fails_the_run_with_one_line_and_no_secret(fake, settings):
    wrong = dataclasses.replace(settings, api_key="not-the-key")
    http = make_http_client(BASE_URL, "not-the-key", transport=httpx.MockTransport(fake.handle))
    with MoeGoClient(http, retry=RetryConfig(attempts=1)) as bad:
        result = collect(wrong, client=bad, now=fake.now)

    assert result.outcome == "failed" and not result.webhooks
    assert "rejected the API key" in result.error and "MOEGO_API_KEY" in result.error
    assert "not-the-key" not in result.error
    assert query(wrong, "SELECT outcome, error FROM collector_runs") == [("failed", result.error)]
    assert query(wrong, "SELECT COUNT(*) FROM deliveries") == [(0,)]


def test_unreachable_host_and_exhausted_rate_limit_fail_one_webhook_each(fake, settings, client):
    # whk_a goes first and meets 429s beyond the client's two attempts; whk_b cannot connect.
    fake.answer_call(1, error(429, 8, "push limit", **{"Retry-After": "1"}))
    fake.answer_call(2, error(429, 8, "push limit", **{"Retry-After": "1"}))
    fake.answer_call(3, httpx.ConnectError("connection refused"))
    result = collect(settings, client=client, now=fake.now)

    by_id = {r.webhook_id: r for r in result.webhooks}
    assert "limiting ListWebhookDeliveries" in by_id["whk_a"].error
    assert "cannot reach MoeGo" in by_id["whk_b"].error
    assert result.outcome == "failed" and result.error.startswith("2 of 2 webhooks failed; whk_a: ")
    assert query(settings, "SELECT COUNT(*) FROM deliveries") == [(0,)]
    assert collect(settings, client=client, now=fake.now + timedelta(minutes=1)).ok
    assert archived_ids(settings) == sorted(fake.live_ids())


def test_the_window_moving_during_a_long_backfill(fake, settings, client):
    """Part of a backfill, two days pass (MoeGo deletes two days, new entries arrive), then the rest.

    The saved resume position is in a chunk MoeGo has meanwhile started deleting: resuming from its
    (position-based) token would skip entries, so the chunk is re-planned from the new window start.
    """
    stop = threading.Event()
    first = collect(settings, client=stopping_client(fake, stop, at_call=7), now=fake.now, stop=stop, chunk=LONG)
    assert first.outcome == "interrupted"
    assert query(settings, "SELECT COUNT(*) FROM sync_state WHERE page_token IS NOT NULL") == [(1,)]
    read_in_first_run = set(archived_ids(settings))
    fake.advance(timedelta(days=2))
    fake.add_deliveries("whk_a", 40, span=timedelta(days=2) - timedelta(minutes=1))
    fake.add_deliveries("whk_b", 40, span=timedelta(days=2) - timedelta(minutes=1))

    second = collect(settings, client=client, now=fake.now, chunk=LONG)

    assert second.ok and not any(r.resumed for r in second.webhooks)
    assert set(fake.live_ids()) <= set(archived_ids(settings))  # everything MoeGo still holds is archived
    assert read_in_first_run - fake.live_ids()  # and what MoeGo deleted since stays in the archive
    db = archive.connect(settings.db_path)
    try:
        for webhook_id in ("whk_a", "whk_b"):
            covered = load_intervals(db, webhook_id)
            assert gaps(covered, fake.now - RETENTION + timedelta(seconds=5), fake.now - SETTLE) == []
            # Coverage never reaches back past what MoeGo still held when it was read.
            assert covered[0].start >= NOW - RETENTION
    finally:
        db.close()


def test_deleted_webhook_keeps_its_archive_and_is_no_longer_read(fake, settings, client):
    collect(settings, client=client, now=fake.now)
    fake.webhooks = [w for w in fake.webhooks if w["id"] != "whk_b"]
    fake.requests.clear()
    result = collect(settings, client=client, now=fake.now + timedelta(minutes=1))

    assert result.ok and [r.webhook_id for r in result.webhooks] == ["whk_a"]
    assert query(settings, "SELECT id, deleted_at IS NOT NULL, is_active FROM webhooks ORDER BY id") == [
        ("whk_a", 0, 1), ("whk_b", 1, 0)]
    assert query(settings, "SELECT COUNT(*) FROM deliveries WHERE webhook_id = 'whk_b'") == [(300,)]
    assert all(r["body"].get("webhookId") != "whk_b" for r in fake.requests)


def test_a_second_collector_is_refused_with_the_holders_pid(fake, settings, client):
    import os

    with collector_lock(settings.db_path):
        with pytest.raises(CollectorBusy, match=rf"^another collector is running \(pid {os.getpid()}\): "):
            collect(settings, client=client, now=fake.now)
    assert collect(settings, client=client, now=fake.now).ok  # released


def test_a_run_left_running_by_a_killed_collector_is_closed_as_interrupted(fake, settings, client):
    collect(settings, client=client, now=fake.now)
    db = archive.connect(settings.db_path)
    with archive.transaction(db) as conn:
        conn.execute("INSERT INTO collector_runs (started_at, outcome, trigger) VALUES ('2026-11-29T11:00:00.000000Z', 'running', 'schedule')")
    db.close()
    collect(settings, client=client, now=fake.now + timedelta(minutes=1))
    assert query(settings, "SELECT outcome FROM collector_runs ORDER BY id") == [("ok",), ("interrupted",), ("ok",)]


def test_sync_webhook_since_fetches_a_redelivery_without_moving_the_resume_position(fake, settings, client):
    collect(settings, client=client, now=fake.now)
    state_before = query(settings, "SELECT * FROM sync_state ORDER BY webhook_id")
    fake.advance(timedelta(minutes=10))
    (new_id,) = fake.add_deliveries("whk_a", 1, newest=fake.now - timedelta(seconds=2))

    db = archive.connect(settings.db_path)
    try:
        result = sync_webhook(settings, db, "whk_a", client=client, since=fake.now - timedelta(minutes=1),
                              now=fake.now)
    finally:
        db.close()

    assert result.ok and (result.new, result.updated, result.pages) == (1, 0, 1)
    assert new_id in archived_ids(settings)
    assert query(settings, "SELECT * FROM sync_state ORDER BY webhook_id") == state_before
    assert query(settings, "SELECT trigger, outcome, new_rows FROM collector_runs ORDER BY id DESC LIMIT 1") == [
        ("redeliver", "ok", 1)]


def test_every_webhooks_oldest_slice_is_read_before_any_webhook_is_read_in_full(fake, settings, client):
    collect(settings, client=client, now=fake.now)

    reads = [(r["body"]["webhookId"], r["body"]["filter"]["deliveryTime"]["startTime"])
             for r in fake.requests if r["path"] == "/v1/webhook/deliveries:list"]
    edge = format_timestamp(NOW - RETENTION)
    at_edge = [start[:16] == edge[:16] for _, start in reads]  # to the minute: the reading clock runs on
    assert [webhook_id for webhook_id, _ in reads[:2]] == ["whk_a", "whk_b"] and at_edge[:2] == [True, True]
    assert at_edge.index(False) == 3  # then whk_a in full: its edge slice again (the overlap), then the rest


def test_an_entry_logged_late_is_collected_even_without_overlap(fake, settings, client):
    """MoeGo logs an entry when its first attempt ends, dated when it began: it can appear behind us."""
    no_overlap = dataclasses.replace(settings, overlap=timedelta(0))
    collect(no_overlap, client=client, now=fake.now)
    late = fake.add_deliveries("whk_a", 1, newest=fake.now - timedelta(seconds=20))  # began 20 s before the run
    fake.advance(timedelta(minutes=5))

    again = collect(no_overlap, client=client, now=fake.now)

    assert again.new == 1
    assert query(settings, "SELECT id FROM deliveries WHERE id = ?", late[0]) == [(late[0],)]


def deleted_marks(settings: Settings) -> dict[str, bool]:
    return {i: d is not None for i, d in query(settings, "SELECT id, deleted_at FROM webhooks ORDER BY id")}


def test_an_empty_webhook_list_fails_the_run_and_marks_nothing_deleted(fake, settings, client):
    """A key of another account lists nothing: that must not read as 'every webhook was deleted'."""
    collect(settings, client=client, now=fake.now)
    fake.unlisted = {"whk_a", "whk_b"}
    saved = fake.webhooks
    fake.webhooks = []

    result = collect(settings, client=client, now=fake.now)

    fake.webhooks = saved
    assert not result.ok and result.outcome == "failed"
    assert result.error.startswith("MoeGo lists no webhooks for this API key, but the archive tracks 2")
    assert deleted_marks(settings) == {"whk_a": False, "whk_b": False}
    assert query(settings, "SELECT outcome FROM collector_runs ORDER BY id DESC LIMIT 1") == [("failed",)]


def test_a_webhook_is_marked_deleted_only_when_moego_says_not_found(fake, settings, client):
    collect(settings, client=client, now=fake.now)
    fake.add_webhook("whk_c")                                         # a new one, listed
    fake.unlisted = {"whk_a"}                                         # left out of the list, but still there
    fake.webhooks = [w for w in fake.webhooks if w["id"] != "whk_b"]  # really deleted: GetWebhook says NOT_FOUND
    fake.add_deliveries("whk_a", 1, newest=fake.now + timedelta(minutes=1))
    fake.advance(timedelta(minutes=5))

    result = collect(settings, client=client, now=fake.now)

    assert result.ok
    assert deleted_marks(settings) == {"whk_a": False, "whk_b": True, "whk_c": False}
    assert {r.webhook_id for r in result.webhooks} == {"whk_a", "whk_c"}  # the unlisted one is still synced
    assert result.new == 1
