"""A collector that stopped or keeps failing is said above every page: the archive's newest complete sync ended
too long ago (dashboard/freshness.py). A stopped collector cannot raise its own ``collector_stale`` incident."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from collectors import archive
from collectors.archive import runs
from collectors.collect import collect
from collectors.models import format_timestamp

from tests.collectors.conftest import sandbox_now, sandbox_settings
from tests.dashboard.test_app import no_exception, read
from tests.seed import ALPHA, BETA, Seed

_BANNER = ":orange-background[:material/sync_problem: "
_COST = "newer deliveries are not in the archive, and MoeGo deletes its log after 15 days."


def _synced(path: Path, **ended: datetime) -> None:
    """Each webhook's last complete sync ended at the time given (what collectors.sync records, moved back in time)."""
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT OR REPLACE INTO sync_state (webhook_id, last_success_at) VALUES (?, ?)",
                         [(hook, format_timestamp(at)) for hook, at in ended.items()])
    conn.close()


def _passes(path: Path, *starts: datetime, running: datetime | None = None) -> None:
    """This archive's collector history is the test's own: scheduled passes that started at ``starts`` and took a
    minute each, then one started at ``running`` that has not finished (a long backfill, or one killed mid-pass)."""
    conn = archive.connect(path)
    conn.execute("DELETE FROM collector_runs")
    for start in starts:
        run_id = runs.start_run(conn, "schedule", start)
        runs.finish_run(conn, run_id, outcome="ok", finished_at=start + timedelta(minutes=1), webhooks=3, pages=1,
                        new_rows=0, updated_rows=0, error=None)
    if running is not None:
        runs.start_run(conn, "schedule", running)
    conn.close()


def _banner(at: AppTest) -> list[str]:
    return [read(m.value[len(_BANNER):-1]) for m in at.markdown if m.value.startswith(_BANNER)]


def _utc(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def test_a_collector_silent_for_two_hours_is_said_on_every_page(run_app, live_seed: Seed) -> None:
    now = datetime.now(timezone.utc)
    newest = now - timedelta(hours=2, minutes=9)
    _passes(live_seed.path, *(newest - timedelta(minutes=m + 1) for m in (30, 20, 10, 0)))  # every 10 min, then none
    _synced(live_seed.path, **{ALPHA: now - timedelta(hours=5), BETA: newest})
    for page in (None, "views/deliveries.py", "views/incidents.py", "views/archive_health.py"):
        at = run_app(live_seed.path, page=page)
        no_exception(at)
        assert _banner(at) == [f"**No complete collection for 2 h** (the last ended {_utc(newest)}; passes usually "
                               f"start every 10 min): {_COST} Is the collector running?"], page
        assert any(link.label == "See the collector runs" for link in at.get("page_link")), page


def test_a_pass_still_running_is_said_instead_of_asking(run_app, live_seed: Seed) -> None:
    now = datetime.now(timezone.utc)
    _passes(live_seed.path, *(now - timedelta(minutes=m) for m in (80, 70, 60, 50)), running=now - timedelta(minutes=40))
    _synced(live_seed.path, **{ALPHA: now - timedelta(minutes=49)})
    at = run_app(live_seed.path)
    no_exception(at)
    assert _banner(at) == [f"**No complete collection for 49 min** (the last ended {_utc(now - timedelta(minutes=49))};"
                           f" passes usually start every 10 min): {_COST} A pass started "
                           f"{_utc(now - timedelta(minutes=40))} has not finished."]


def test_an_hourly_collector_is_not_late_between_its_passes(run_app, live_seed: Seed) -> None:
    now = datetime.now(timezone.utc)
    _passes(live_seed.path, *(now - timedelta(minutes=m) for m in (231, 171, 111, 51)))
    _synced(live_seed.path, **{ALPHA: now - timedelta(minutes=50)})
    at = run_app(live_seed.path)
    no_exception(at)
    assert _banner(at) == []  # 50 min after an hourly pass: on time
    _synced(live_seed.path, **{ALPHA: now - timedelta(hours=2, minutes=10)})
    st.cache_data.clear()  # the console rereads within a minute (reads.CACHE_TTL_S); the test does not wait
    at = run_app(live_seed.path)
    assert _banner(at)[0].startswith("**No complete collection for 2 h** (the last ended ")
    assert "; passes usually start every 60 min): " in _banner(at)[0]


def test_a_collector_whose_key_is_refused_says_why(run_app, sandbox, tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    assert collect(sandbox_settings(sandbox, db), now=sandbox_now(sandbox)).ok
    conn = sqlite3.connect(db)
    (synced,) = conn.execute("SELECT max(last_success_at) FROM sync_state").fetchone()
    conn.close()
    at = run_app(db)
    no_exception(at)
    assert _banner(at) == []  # just collected

    # An hour later the key was rotated at MoeGo and the collector kept the old one: every pass since failed.
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1, minutes=1)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE sync_state SET last_success_at = ?", (format_timestamp(hour_ago),))
    conn.close()
    for _ in range(3):
        failed = collect(dataclasses.replace(sandbox_settings(sandbox, db), api_key="rotated-away-key"), trigger="schedule")
        assert not failed.ok
    conn = sqlite3.connect(db)
    started, error = conn.execute("SELECT started_at, error FROM collector_runs ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    st.cache_data.clear()  # the console rereads within a minute (reads.CACHE_TTL_S); the test does not wait
    at = run_app(db)
    no_exception(at)
    (banner,) = _banner(at)
    assert banner.startswith(f"**No complete collection for 61 min** (the last ended {_utc(hour_ago)}; passes usually ")
    assert banner.endswith(f"{_COST} The last pass, started {started[:19].replace('T', ' ')} UTC, failed: {error}")
    assert "rejected the API key" in error and synced
    assert "rotated-away-key" not in banner and sandbox.api_key not in banner


def test_a_recent_sync_or_none_yet_says_nothing(run_app, live_seed: Seed) -> None:
    now = datetime.now(timezone.utc)
    _passes(live_seed.path, *(now - timedelta(minutes=m) for m in (40, 30, 20, 10)))
    at = run_app(live_seed.path)  # nothing synced yet: Archive health says "No collector run recorded yet."
    no_exception(at)
    assert _banner(at) == []
    _synced(live_seed.path, **{ALPHA: now - timedelta(hours=3), BETA: now - timedelta(minutes=25)})
    st.cache_data.clear()  # the console rereads within a minute (reads.CACHE_TTL_S); the test does not wait
    at = run_app(live_seed.path)
    no_exception(at)
    assert _banner(at) == []
