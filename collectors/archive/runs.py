"""Collector runs: the lock that keeps one collector at a time, and the ``collector_runs`` log.

The lock is an OS file lock (``fcntl.flock``) on ``<archive>.lock`` beside the archive. The kernel
releases it when its holder exits for any reason, SIGKILL included, so a dead collector never
blocks the next one. The holder writes its pid into the file, so a second collector can say who
holds it. The lock file is never deleted (deleting a lock file races with the next taker).

``collector_runs`` gets one row per run: :func:`start_run` inserts it as ``running``,
:func:`finish_run` sets the outcome (``ok``, ``failed`` or ``interrupted``), the counts and one
line of error. A run killed before finishing stays ``running`` until the next locked run calls
:func:`close_abandoned_runs`, which marks it ``interrupted``. What the runs achieved is read back by
:mod:`collectors.archive.status`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

from ..models import format_timestamp
from ..redaction import scrub_secrets
from .schema import transaction

__all__ = [
    "CollectorBusy",
    "LOCKED_TRIGGERS",
    "RunRecord",
    "lock_path",
    "collector_lock",
    "start_run",
    "finish_run",
    "close_abandoned_runs",
    "last_run",
    "one_line",
]

#: Triggers whose runs only ever happen while holding :func:`collector_lock` (see :func:`collectors.collect.collect`).
LOCKED_TRIGGERS: tuple[str, ...] = ("collect", "schedule", "dashboard")
#: A run of another trigger (a short sync after a redelivery) still ``running`` after this long is dead.
ABANDONED_AFTER = timedelta(hours=6)
#: The longest error text stored or shown.
MAX_ERROR_CHARS = 500


class CollectorBusy(Exception):
    """Another collector holds the archive's lock."""


def one_line(text: str) -> str:
    """``text`` on one line, at most :data:`MAX_ERROR_CHARS` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 1] + "…"


def lock_path(db_path: str | Path) -> Path:
    """The lock file of the archive at ``db_path``: ``<db_path>.lock``."""
    path = Path(db_path)
    return path.with_name(path.name + ".lock")


@contextmanager
def collector_lock(db_path: str | Path) -> Iterator[Path]:
    """Hold the collector lock of the archive at ``db_path`` for the ``with`` block, or raise :class:`CollectorBusy`.

    Never waits: a second collector is told at once who is running. Released when the block ends
    and, if the process dies, by the kernel.
    """
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="ascii")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise CollectorBusy(
                f"another collector is running (pid {holder}): let it finish, or stop it, and try again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


@dataclass(frozen=True)
class RunRecord:
    """One row of ``collector_runs``."""

    id: int
    started_at: str
    finished_at: str | None
    outcome: str
    trigger: str
    webhooks: int
    pages: int
    new_rows: int
    updated_rows: int
    error: str | None
    clock_skew_s: float | None = None  # MoeGo's clock minus this host's, when the run measured it

    def to_json(self) -> dict[str, object]:
        """The run as a JSON-ready dict (times stay RFC 3339 text)."""
        return {
            "id": self.id, "startedAt": self.started_at, "finishedAt": self.finished_at, "outcome": self.outcome,
            "trigger": self.trigger, "webhooks": self.webhooks, "pages": self.pages, "newRows": self.new_rows,
            "updatedRows": self.updated_rows, "error": self.error, "clockSkewSeconds": self.clock_skew_s,
        }


def start_run(conn: sqlite3.Connection, trigger: str, started_at: datetime, *, requested_by: str | None = None) -> int:
    """Insert a ``running`` row for a run that starts now (``requested_by``: the console user who asked for
    it); returns its id."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO collector_runs (started_at, outcome, trigger, requested_by) VALUES (?, 'running', ?, ?)",
            (format_timestamp(started_at), trigger, requested_by),
        )
        return int(cursor.lastrowid or 0)


def finish_run(conn: sqlite3.Connection, run_id: int, *, outcome: str, finished_at: datetime, webhooks: int,
               pages: int, new_rows: int, updated_rows: int, error: str | None,
               clock_skew: timedelta | None = None, secrets: tuple[str, ...] = ()) -> None:
    """Record how a run ended. ``error`` is scrubbed of credentials and ``secrets`` and flattened to one line."""
    if outcome not in ("ok", "failed", "interrupted"):
        raise ValueError(f"not a run outcome: {outcome!r}")
    with transaction(conn):
        conn.execute(
            """UPDATE collector_runs SET finished_at = ?, outcome = ?, webhooks = ?, pages = ?, new_rows = ?,
               updated_rows = ?, error = ?, clock_skew_s = ? WHERE id = ?""",
            (format_timestamp(finished_at), outcome, webhooks, pages, new_rows, updated_rows,
             one_line(scrub_secrets(error, secrets)) if error else None,
             round(clock_skew.total_seconds(), 3) if clock_skew is not None else None, run_id),
        )


def close_abandoned_runs(conn: sqlite3.Connection, now: datetime) -> int:
    """Mark runs left ``running`` by a dead collector as ``interrupted``; returns how many. Call holding the lock.

    Runs of :data:`LOCKED_TRIGGERS` cannot be alive while the caller holds the lock; runs of other
    triggers are considered dead after :data:`ABANDONED_AFTER`.
    """
    placeholders = ", ".join("?" for _ in LOCKED_TRIGGERS)
    with transaction(conn):
        cursor = conn.execute(
            f"""UPDATE collector_runs SET outcome = 'interrupted',
                error = 'the collector stopped without recording an outcome (killed or crashed); the next run resumed'
                WHERE outcome = 'running' AND (trigger IN ({placeholders}) OR started_at < ?)""",
            (*LOCKED_TRIGGERS, format_timestamp(now - ABANDONED_AFTER)),
        )
        return cursor.rowcount


def last_run(conn: sqlite3.Connection) -> RunRecord | None:
    """The most recently started run, or ``None`` before the first."""
    row = conn.execute(
        """SELECT id, started_at, finished_at, outcome, trigger, webhooks, pages, new_rows, updated_rows, error,
                  clock_skew_s
           FROM collector_runs ORDER BY started_at DESC, id DESC LIMIT 1"""
    ).fetchone()
    return RunRecord(*row) if row else None
