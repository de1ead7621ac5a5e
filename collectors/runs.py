"""Collector runs: the lock that keeps one collector at a time, the ``collector_runs`` log, and status.

The lock is an OS file lock (``fcntl.flock``) on ``<archive>.lock`` beside the archive. The kernel
releases it when its holder exits for any reason, SIGKILL included, so a dead collector never
blocks the next one. The holder writes its pid into the file, so a second collector can say who
holds it. The lock file is never deleted (deleting a lock file races with the next taker).

``collector_runs`` gets one row per run: :func:`start_run` inserts it as ``running``,
:func:`finish_run` sets the outcome (``ok``, ``failed`` or ``interrupted``), the counts and one
line of error. A run killed before finishing stays ``running`` until the next locked run calls
:func:`close_abandoned_runs`, which marks it ``interrupted``.

:func:`archive_status` reads back, per webhook, what the ``status`` command and the dashboard show:
the last successful sync, the oldest and newest archived entry, the gaps in MoeGo's 15-day window
and the part of them at risk, plus the last run.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import sqlite_utils

from . import archive, skew
from .coverage import Interval, at_risk, gaps, load_intervals, retention_start
from .models import format_timestamp, parse_timestamp
from .redaction import scrub_secrets

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
    "WebhookStatus",
    "ArchiveStatus",
    "archive_status",
]

#: Triggers whose runs only ever happen while holding :func:`collector_lock` (see :func:`collectors.sync.collect`).
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


def start_run(db: sqlite_utils.Database, trigger: str, started_at: datetime) -> int:
    """Insert a ``running`` row for a run that starts now; returns its id."""
    with archive.transaction(db) as conn:
        cursor = conn.execute(
            "INSERT INTO collector_runs (started_at, outcome, trigger) VALUES (?, 'running', ?)",
            (format_timestamp(started_at), trigger),
        )
        return int(cursor.lastrowid or 0)


def finish_run(db: sqlite_utils.Database, run_id: int, *, outcome: str, finished_at: datetime, webhooks: int,
               pages: int, new_rows: int, updated_rows: int, error: str | None,
               clock_skew: timedelta | None = None, secrets: tuple[str, ...] = ()) -> None:
    """Record how a run ended. ``error`` is scrubbed of credentials and ``secrets`` and flattened to one line."""
    if outcome not in ("ok", "failed", "interrupted"):
        raise ValueError(f"not a run outcome: {outcome!r}")
    with archive.transaction(db) as conn:
        conn.execute(
            """UPDATE collector_runs SET finished_at = ?, outcome = ?, webhooks = ?, pages = ?, new_rows = ?,
               updated_rows = ?, error = ?, clock_skew_s = ? WHERE id = ?""",
            (format_timestamp(finished_at), outcome, webhooks, pages, new_rows, updated_rows,
             one_line(scrub_secrets(error, secrets)) if error else None,
             round(clock_skew.total_seconds(), 3) if clock_skew is not None else None, run_id),
        )


def close_abandoned_runs(db: sqlite_utils.Database, now: datetime) -> int:
    """Mark runs left ``running`` by a dead collector as ``interrupted``; returns how many. Call holding the lock.

    Runs of :data:`LOCKED_TRIGGERS` cannot be alive while the caller holds the lock; runs of other
    triggers are considered dead after :data:`ABANDONED_AFTER`.
    """
    placeholders = ", ".join("?" for _ in LOCKED_TRIGGERS)
    with archive.transaction(db) as conn:
        cursor = conn.execute(
            f"""UPDATE collector_runs SET outcome = 'interrupted',
                error = 'the collector stopped without recording an outcome (killed or crashed); the next run resumed'
                WHERE outcome = 'running' AND (trigger IN ({placeholders}) OR started_at < ?)""",
            (*LOCKED_TRIGGERS, format_timestamp(now - ABANDONED_AFTER)),
        )
        return cursor.rowcount


def last_run(db: sqlite_utils.Database) -> RunRecord | None:
    """The most recently started run, or ``None`` before the first."""
    row = db.conn.execute(
        """SELECT id, started_at, finished_at, outcome, trigger, webhooks, pages, new_rows, updated_rows, error,
                  clock_skew_s
           FROM collector_runs ORDER BY started_at DESC, id DESC LIMIT 1"""
    ).fetchone()
    return RunRecord(*row) if row else None


# -- status -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookStatus:
    """What the archive knows about one webhook at ``now`` (see :func:`archive_status`).

    ``gaps`` are the parts of the 15-day retention window not covered, but for the part that runs
    up to ``now``: that one is ``pending_since`` (what arrived since the last sync; the whole window
    for a webhook never synced). ``at_risk`` are the uncovered parts (gaps or pending) that MoeGo
    deletes within 48 hours. A webhook MoeGo no longer lists (``deleted_at`` set) cannot be read any
    more, so it has neither gaps nor risk: its archive is what there is.
    """

    webhook_id: str
    endpoint_url: str
    is_active: bool
    deleted_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    oldest: datetime | None
    newest: datetime | None
    resuming: bool
    gaps: tuple[Interval, ...]
    pending_since: datetime | None
    at_risk: tuple[Interval, ...]

    def to_json(self) -> dict[str, object]:
        """The status as a JSON-ready dict, times as RFC 3339 text."""
        return {
            "webhookId": self.webhook_id,
            "endpointUrl": self.endpoint_url,
            "isActive": self.is_active,
            "deletedAt": _text(self.deleted_at),
            "lastSuccessAt": _text(self.last_success_at),
            "lastError": self.last_error,
            "lastErrorAt": _text(self.last_error_at),
            "oldest": _text(self.oldest),
            "newest": _text(self.newest),
            "resuming": self.resuming,
            "gaps": [{"start": _text(g.start), "end": _text(g.end)} for g in self.gaps],
            "pendingSince": _text(self.pending_since),
            "atRisk": [{"start": _text(g.start), "end": _text(g.end)} for g in self.at_risk],
        }


@dataclass(frozen=True)
class ArchiveStatus:
    """Every webhook's :class:`WebhookStatus` and the last collector run, at ``now``."""

    now: datetime
    webhooks: tuple[WebhookStatus, ...]
    last_run: RunRecord | None
    clock_skew_s: float | None = None  # the skew the most recent run that measured one found (MoeGo minus host)

    @property
    def at_risk(self) -> bool:
        """True when some webhook has a part of the window not archived that MoeGo deletes within 48 h."""
        return any(w.at_risk for w in self.webhooks)

    @property
    def clock_warning(self) -> str | None:
        """One line when the last measured clock skew is beyond :data:`collectors.skew.WARN_AFTER`, else ``None``."""
        if self.clock_skew_s is None or abs(self.clock_skew_s) <= skew.WARN_AFTER.total_seconds():
            return None
        applied = abs(self.clock_skew_s) <= skew.MAX_CORRECTION.total_seconds()
        return (f"{skew.describe(self.clock_skew_s)}: the collector "
                f"{'corrects its windows by it' if applied else 'cannot correct a skew this large'}; "
                "set this host's time right (NTP)")

    def to_json(self) -> dict[str, object]:
        """The whole status as a JSON-ready dict."""
        return {
            "now": _text(self.now),
            "atRisk": self.at_risk,
            "webhooks": [w.to_json() for w in self.webhooks],
            "lastRun": self.last_run.to_json() if self.last_run else None,
            "clockSkewSeconds": self.clock_skew_s,
            "clockWarning": self.clock_warning,
        }


def _text(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def _time(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def archive_status(db: sqlite_utils.Database, now: datetime) -> ArchiveStatus:
    """Read what the archive holds per webhook at ``now``: last sync, oldest/newest entry, gaps, risk.

    Reads only (works on a read-only connection). Webhooks are those the collector has seen, plus
    any with archived entries but no configuration row, ordered by id.
    """
    conn = db.conn
    if archive.schema_version(db) < archive.SCHEMA_VERSION:
        raise archive.ArchiveError("the archive is not set up yet: run 'moego-monitor collect' first")
    hooks: dict[str, tuple[str, bool, str | None]] = {
        row[0]: (row[1], bool(row[2]), row[3])
        for row in conn.execute("SELECT id, endpoint_url, is_active, deleted_at FROM webhooks")
    }
    for (webhook_id,) in conn.execute("SELECT webhook_id FROM sync_state UNION SELECT webhook_id FROM coverage"):
        hooks.setdefault(webhook_id, ("", True, None))
    window_start = retention_start(now)
    out = []
    for webhook_id in sorted(hooks):
        endpoint_url, is_active, deleted_at = hooks[webhook_id]
        state = conn.execute(
            "SELECT last_success_at, last_error, last_error_at, page_token FROM sync_state WHERE webhook_id = ?",
            (webhook_id,),
        ).fetchone() or (None, None, None, None)
        oldest, newest = conn.execute(
            # Two subqueries, so each is one seek on (webhook_id, delivered_at) rather than a scan of the webhook.
            "SELECT (SELECT MIN(delivered_at) FROM deliveries WHERE webhook_id = ?),"
            " (SELECT MAX(delivered_at) FROM deliveries WHERE webhook_id = ?)",
            (webhook_id, webhook_id),
        ).fetchone()
        last_success, error_at = _time(state[0]), _time(state[2])
        error_is_current = error_at is not None and (last_success is None or error_at > last_success)
        intervals = load_intervals(db, webhook_id)
        live = deleted_at is None
        holes = gaps(intervals, window_start, now) if live else []
        pending = holes.pop().start if holes and holes[-1].end >= now else None
        out.append(WebhookStatus(
            webhook_id=webhook_id,
            endpoint_url=endpoint_url,
            is_active=is_active,
            deleted_at=_time(deleted_at),
            last_success_at=last_success,
            last_error=state[1] if error_is_current else None,
            last_error_at=error_at if error_is_current else None,
            oldest=_time(oldest),
            newest=_time(newest),
            resuming=bool(state[3]),
            gaps=tuple(holes),
            pending_since=pending,
            at_risk=tuple(at_risk(intervals, now)) if live else (),
        ))
    measured = conn.execute(
        "SELECT clock_skew_s FROM collector_runs WHERE clock_skew_s IS NOT NULL ORDER BY started_at DESC, id DESC LIMIT 1"
    ).fetchone()
    return ArchiveStatus(now=now, webhooks=tuple(out), last_run=last_run(db),
                         clock_skew_s=measured[0] if measured else None)
