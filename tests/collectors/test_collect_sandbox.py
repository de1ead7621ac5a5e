"""The collector against the sandbox over real loopback HTTP: completeness, reruns, kills, concurrency, time."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from collectors import archive
from collectors.archive.coverage import RETENTION
from collectors.models import format_timestamp, parse_timestamp
from collectors.archive.runs import lock_path
from collectors.archive.status import archive_status
from collectors.collect import collect
from tests.conftest import SandboxHandle, running_sandbox, start_sandbox, stop_sandbox

from .conftest import (
    archived_by_webhook,
    assert_archive_consistent,
    assert_killed_backfill_resumes,
    db_rows,
    listed_ids,
    run_cli,
    sandbox_now,
    sandbox_settings,
    start_cli,
    writing,
)

CONTENT = ("id, webhook_id, event_type, event_id, request_headers, request_body, response_status, response_body, "
           "delivered_at, duration_ms, success, error, retry_count, status_class, error_class, first_seen_at")


@pytest.fixture(scope="module")
def small_sandbox() -> Iterator[SandboxHandle]:
    """A sandbox with 3 days of history (about 4,600 entries over 5 webhooks); its clock is never advanced."""
    with running_sandbox("--history-days", "3") as handle:
        yield handle


def wait_for(predicate, *, timeout: float = 60.0, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("condition not met in time")


def saved_positions(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        return db_rows(db_path, "SELECT COUNT(*) FROM sync_state WHERE page_token IS NOT NULL")[0][0]
    except Exception:  # the archive may not have its tables yet
        return 0


def test_a_backfill_holds_exactly_the_sandboxs_entries_and_a_rerun_changes_nothing(small_sandbox, tmp_path):
    settings = sandbox_settings(small_sandbox, tmp_path / "a.db")
    started = time.monotonic()
    result = collect(settings, now=sandbox_now(small_sandbox))
    backfill_s = time.monotonic() - started
    listed = listed_ids(small_sandbox)

    assert result.ok, result.summary_lines
    assert archived_by_webhook(settings.db_path) == listed  # same ids, same count, per webhook
    assert result.new == sum(len(ids) for ids in listed.values()) > 3000
    assert_archive_consistent(settings.db_path)
    print(f"backfill of {result.new} entries in {backfill_s:.1f}s ({result.pages} pages)")

    before = db_rows(settings.db_path, f"SELECT {CONTENT} FROM deliveries ORDER BY id")
    again = collect(settings, now=sandbox_now(small_sandbox))
    assert again.ok and (again.new, again.updated) == (0, 0)
    assert db_rows(settings.db_path, f"SELECT {CONTENT} FROM deliveries ORDER BY id") == before


def test_an_entry_changed_by_a_late_retry_is_updated(small_sandbox, tmp_path):
    settings = sandbox_settings(small_sandbox, tmp_path / "a.db")
    webhook_id = sorted(listed_ids(small_sandbox))[0]
    small_sandbox.generate(webhook_id, 5, fail_rate=1.0, spread_seconds=600)
    now = sandbox_now(small_sandbox)
    collect(settings, now=now)
    # A failed entry of the last 10 minutes: well inside the overlap the next run re-reads.
    ((entry_id, retries),) = db_rows(
        settings.db_path, "SELECT id, retry_count FROM deliveries WHERE webhook_id = ? AND success = 0 "
                          "AND delivered_at >= ? ORDER BY delivered_at DESC LIMIT 1",
        webhook_id, format_timestamp(now - timedelta(minutes=10)))
    with httpx.Client(base_url=small_sandbox.base_url, timeout=10) as admin:
        admin.post("/_sandbox/deliveries:mutate", json={
            "id": entry_id, "success": True, "responseStatus": 200, "retryCount": retries + 2, "error": ""},
        ).raise_for_status()

    again = collect(settings, now=sandbox_now(small_sandbox))

    assert again.ok and (again.new, again.updated) == (0, 1)
    assert db_rows(settings.db_path, "SELECT success, retry_count, response_status FROM deliveries WHERE id = ?",
                   entry_id) == [(1, retries + 2, 200)]
    assert_archive_consistent(settings.db_path)


def archived(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        return db_rows(db_path, "SELECT COUNT(*) FROM deliveries")[0][0]
    except Exception:  # the archive may not have its tables yet
        return 0


def test_a_collector_killed_mid_backfill_resumes_with_nothing_lost_or_doubled(tmp_path):
    db_path = tmp_path / "a.db"
    with running_sandbox("--history-days", "2") as handle:
        # A dense hour (one chunk of ~20 pages), so the backfill is still writing when it is killed: some pages
        # committed, a batch of others saved but not committed (the write lock held), and all of it is lost.
        handle.generate(sorted(listed_ids(handle))[0], 10_000, spread_seconds=3600)
        assert_killed_backfill_resumes(db_path, handle, ("--chunk", "1d"),
                                       ready=lambda: archived(db_path) > 0 and writing(db_path))


def test_two_collectors_at_once_neither_corrupt_nor_crash(small_sandbox, tmp_path):
    db_path = tmp_path / "a.db"
    first = start_cli("collect", "--db", str(db_path), "--chunk", "1d", handle=small_sandbox)
    try:
        wait_for(lambda: lock_path(db_path).exists() and lock_path(db_path).read_text().strip() == str(first.pid)
                 or first.poll() is not None)
        second = run_cli("collect", "--db", str(db_path), handle=small_sandbox)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"Error: another collector is running (pid {first.pid}): let it finish, or stop it, and try again"]
    assert "Traceback" not in err + second.stderr
    assert archived_by_webhook(db_path) == listed_ids(small_sandbox)
    assert_archive_consistent(db_path)
    assert db_rows(db_path, "SELECT outcome FROM collector_runs") == [("ok",)]


def test_the_window_moving_during_a_long_backfill(tmp_path):
    handle = start_sandbox("--history-days", "16")
    try:
        settings = sandbox_settings(handle, tmp_path / "a.db")
        stop = threading.Event()
        pages = []
        first = collect(settings, now=sandbox_now(handle), stop=stop, chunk=timedelta(days=1),
                        progress=lambda p: (pages.append(p), len(pages) == 12 and stop.set()))
        assert first.outcome == "interrupted"

        handle.advance_clock(2 * 86400)  # two days pass: MoeGo deletes two more days, two new days arrive
        webhook_id = sorted(handle.stats()["webhooks"])[0]
        handle.generate(webhook_id, 200, spread_seconds=2 * 86400 - 60)
        now = sandbox_now(handle)
        second = collect(settings, now=now, chunk=timedelta(days=1))

        assert second.ok, second.summary_lines
        # Per webhook, the archive holds as many entries of the retention window as the sandbox does
        # (ids are unique and all came from the sandbox), plus older ones MoeGo has deleted since.
        stats = handle.stats()
        floor = format_timestamp(parse_timestamp(stats["now"]) - RETENTION)
        for webhook_id, held in stats["webhooks"].items():
            assert db_rows(settings.db_path, "SELECT COUNT(*) FROM deliveries WHERE webhook_id = ? AND delivered_at >= ?",
                           webhook_id, floor) == [(held["deliveries"],)], webhook_id
        assert db_rows(settings.db_path, "SELECT COUNT(*) FROM deliveries WHERE delivered_at < ?", floor)[0][0] > 0
        assert_archive_consistent(settings.db_path)
        db = archive.connect(settings.db_path)
        try:
            status = archive_status(db, now + timedelta(seconds=30))
        finally:
            db.close()
        assert not status.at_risk
        assert all(w.gaps == () for w in status.webhooks)
    finally:
        stop_sandbox(handle)


def test_schedule_runs_passes_and_stops_cleanly_on_sigterm(small_sandbox, tmp_path):
    db_path = tmp_path / "a.db"
    process = start_cli("schedule", "--db", str(db_path), "--every", "1s", handle=small_sandbox)
    try:
        wait_for(lambda: db_path.exists() and len(_finished_runs(db_path)) >= 2 or process.poll() is not None)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    lines = err.strip().splitlines()
    assert lines[-1] == "moego-monitor schedule stopped; the archive is consistent and the next run resumes"
    assert any(" INFO pass #1 ok: 5 webhooks, " in line for line in lines)
    assert "SIGTERM: stopping after the current page" in err
    assert small_sandbox.api_key not in err + out and "Traceback" not in err
    runs = db_rows(db_path, "SELECT trigger, outcome FROM collector_runs ORDER BY id")
    assert runs[0] == ("schedule", "ok") and all(r[1] in ("ok", "interrupted") for r in runs)
    assert_archive_consistent(db_path)


def _finished_runs(db_path: Path) -> list[tuple]:
    try:
        return db_rows(db_path, "SELECT id FROM collector_runs WHERE outcome != 'running'")
    except Exception:
        return []
