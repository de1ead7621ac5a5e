"""Helpers for the collector's tests: the collector as a subprocess, reading the archive, the sandbox's clock."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from collectors.archive import HISTOGRAM_COLUMNS
from collectors.archive.runs import lock_path
from collectors.archive.rollups import (DAILY_STATUS_FROM_RAW, SPANS_FROM_RAW, STATUS_FROM_RAW, daily_from_raw_sql,
                                        hourly_from_raw_sql, migrate_add_daily)
from collectors.archive.schema import _MIGRATIONS
from collectors.client import make_client
from collectors.config import Settings
from collectors.models import parse_timestamp
from tests.conftest import REPO, SandboxHandle, running_sandbox

#: Runs the ``moego-monitor`` command in a fresh interpreter.
CLI = [sys.executable, "-m", "collectors"]


def cli_env(handle: SandboxHandle | None = None, **extra: str) -> dict[str, str]:
    """The environment for a collector subprocess: the repo importable, MOEGO_* pointing at ``handle``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if handle is not None:
        env["MOEGO_API_KEY"] = handle.api_key
        env["MOEGO_BASE_URL"] = handle.base_url
    env.update(extra)
    return env


def start_cli(*args: str, handle: SandboxHandle | None = None, **env: str) -> subprocess.Popen[str]:
    """Start ``moego-monitor ARGS`` in the background (stdout and stderr piped, text)."""
    return subprocess.Popen([*CLI, *args], cwd=REPO, env=cli_env(handle, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_cli(*args: str, handle: SandboxHandle | None = None, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``moego-monitor ARGS`` to completion."""
    return subprocess.run([*CLI, *args], cwd=REPO, env=cli_env(handle, **env), capture_output=True, text=True,
                          timeout=timeout)


def sandbox_settings(handle: SandboxHandle, db_path: Path, **changes: Any) -> Settings:
    return Settings(api_key=handle.api_key, base_url=handle.base_url, db_path=db_path, timeout_s=15.0, **changes)


def sandbox_now(handle: SandboxHandle) -> datetime:
    """The sandbox's clock (wall clock plus however far tests advanced it)."""
    return parse_timestamp(handle.health()["now"])


def listed_ids(handle: SandboxHandle) -> dict[str, set[str]]:
    """Every entry the sandbox holds, per webhook that has any, listed directly with the client (no time filter)."""
    with make_client(sandbox_settings(handle, Path("unused.db"))) as client:
        listed = {hook.id: {d.id for d in client.list_deliveries(hook.id)} for hook in client.list_webhooks()}
    return {webhook_id: ids for webhook_id, ids in listed.items() if ids}


def db_rows(db_path: Path, sql: str, *params: Any) -> list[tuple]:
    """Rows of a query against the archive (a plain read-only connection, closed after)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def archived_by_webhook(db_path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for delivery_id, webhook_id in db_rows(db_path, "SELECT id, webhook_id FROM deliveries"):
        out.setdefault(webhook_id, set()).add(delivery_id)
    return out


_ROLLUP_FROM_RAW = hourly_from_raw_sql() + " ORDER BY 1, 2, 3, 4, 5, 6"
_ROLLUP = f"""
    SELECT webhook_id, hour, event_type, success, status_class, error_class,
           deliveries, retries, duration_sum, duration_max, {', '.join(HISTOGRAM_COLUMNS)}
    FROM delivery_hourly ORDER BY 1, 2, 3, 4, 5, 6
"""


def assert_archive_consistent(db_path: Path) -> None:
    """The file is sound, and every rollup is exactly what the raw rows say, group by group."""
    assert db_rows(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert db_rows(db_path, _ROLLUP) == db_rows(db_path, _ROLLUP_FROM_RAW)
    assert db_rows(db_path, "SELECT * FROM delivery_hourly_status ORDER BY 1, 2, 3, 4, 5") == db_rows(
        db_path, STATUS_FROM_RAW + " ORDER BY 1, 2, 3, 4, 5")
    assert db_rows(db_path, "SELECT * FROM delivery_daily_status ORDER BY 1, 2, 3, 4, 5") == db_rows(
        db_path, DAILY_STATUS_FROM_RAW + " ORDER BY 1, 2, 3, 4, 5")
    assert db_rows(db_path, "SELECT * FROM delivery_spans ORDER BY 1, 2") == db_rows(db_path, SPANS_FROM_RAW + " ORDER BY 1, 2")
    has_daily = db_rows(db_path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'delivery_daily'") == [(1,)]
    if db_rows(db_path, "PRAGMA user_version")[0][0] > _MIGRATIONS.index(migrate_add_daily):
        assert has_daily, "an archive at schema 15 or later has delivery_daily"
    if has_daily:
        assert db_rows(db_path, "SELECT * FROM delivery_daily ORDER BY 1, 2, 3, 4, 5, 6") == db_rows(
            db_path, daily_from_raw_sql() + " ORDER BY 1, 2, 3, 4, 5, 6")


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[SandboxHandle]:
    """A sandbox for one test module (its clock is never advanced, so it agrees with the wall clock)."""
    with running_sandbox() as handle:
        yield handle


def writing(db_path: Path) -> bool:
    """Whether another connection holds the archive's write lock (the collector inside a transaction)."""
    probe = sqlite3.connect(db_path, timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


def assert_killed_backfill_resumes(db_path: Path, handle: SandboxHandle, args: tuple[str, ...],
                                   ready: Callable[[], bool]) -> None:
    """``moego-monitor collect --db DB *args`` killed with SIGKILL mid-backfill, once ``ready()`` holds, then run again.

    What the kill left is consistent (whole batches, positions with them); the second pass archives exactly the
    entries the sandbox lists, and its new rows are exactly what the first had not committed (nothing doubled).
    """
    first = start_cli("collect", "--db", str(db_path), *args, handle=handle)
    try:
        deadline = time.monotonic() + 120
        while not ready() and first.poll() is None:
            assert time.monotonic() < deadline, "the backfill never reached the point to kill it at"
            time.sleep(0.01)
        assert first.poll() is None, f"the backfill ended before it could be killed: {first.communicate()}"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
        first.communicate()
    archived_before = sum(len(ids) for ids in archived_by_webhook(db_path).values())
    assert archived_before > 0 and lock_path(db_path).exists()
    assert_archive_consistent(db_path)

    second = run_cli("collect", "--db", str(db_path), *args, handle=handle)  # the kernel released the lock

    assert second.returncode == 0, second.stderr
    listed = listed_ids(handle)
    assert archived_by_webhook(db_path) == listed
    assert_archive_consistent(db_path)
    assert db_rows(db_path, "SELECT outcome FROM collector_runs ORDER BY id") == [("interrupted",), ("ok",)]
    assert db_rows(db_path, "SELECT new_rows FROM collector_runs WHERE outcome = 'ok'")[0][0] == (
        sum(len(ids) for ids in listed.values()) - archived_before)
