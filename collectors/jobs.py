"""Bulk redelivery as a job that outlives the page: stored in the archive, worked by a background worker.

A page plans a bulk redelivery (:func:`collectors.bulk.plan_bulk`), estimates it (:func:`estimate_seconds`)
and calls :func:`submit_bulk`, which stores the plan as a ``bulk_jobs`` row and returns at once. A
:class:`JobWorker` (a daemon thread: the dashboard process runs one, the scheduler may run another)
claims the job with a lease, sends the plan with :func:`collectors.bulk.bulk_redeliver_and_resync` under
the job's id as the audit ``batch_id``, and marks it ``done``, ``cancelled`` or ``failed``. Any page can
read a job (:func:`load_job`, :func:`active_jobs`) and ask to cancel it (:func:`request_cancel`); the worker
stops before the next entry.

Restart safety: the audit rows are the job's memory. Every entry gets its audit row (``redeliveries``,
reserved *before* MoeGo is called) under the batch id, so a worker taking over a job whose lease ran out
(the dashboard was killed mid-run) sends only the entries that have no audit row yet: an entry is never
sent twice, and one whose request was in flight when the process died keeps its "in flight" row.

Counts (:class:`JobCounts`) are of outcomes, read from the audit rows: new attempts that *succeeded*,
redeliveries that *failed* (MoeGo refused, or the new attempt failed too) and entries *skipped*. The
screen, the toast and the audit table therefore always agree.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import archive
from .bulk import BulkPlan, bulk_redeliver_and_resync, new_batch_id
from .client import MoeGoClient
from .config import Settings
from .models import format_timestamp, parse_timestamp
from .ratelimit import DEFAULT_PER_MINUTE
from .redelivery import IN_FLIGHT, Candidate

__all__ = [
    "LEASE",
    "lease_for",
    "ENDPOINT_LIMIT_S",
    "INTERRUPTED",
    "JobCounts",
    "BulkJob",
    "estimate_seconds",
    "recent_durations_ms",
    "submit_bulk",
    "request_cancel",
    "job_counts",
    "load_job",
    "active_jobs",
    "latest_job",
    "claim_job",
    "work_job",
    "work_pending",
    "JobWorker",
]

log = logging.getLogger(__name__)

#: A worker holds a job at least this long past its last sign of life; then another worker may take it over.
LEASE = timedelta(seconds=60)
#: MoeGo gives an endpoint this long to answer: no redelivery call waits longer for it.
ENDPOINT_LIMIT_S = 30.0
#: Time per call besides the endpoint's own (MoeGo's work and the round trip), for the estimate.
CALL_OVERHEAD_S = 0.2

_ACTIVE = ("queued", "running")
#: An entry whose request was in flight when the worker stopped: MoeGo may or may not have sent it.
INTERRUPTED = ("no answer recorded: the worker stopped while this request was in flight, so it is not sent again; "
               "check the entry's attempts before retrying it by hand")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _time(text: str | None) -> datetime | None:
    return parse_timestamp(text) if text else None


# -- estimate -------------------------------------------------------------------------------------


def recent_durations_ms(conn: sqlite3.Connection, webhook_ids: Sequence[str], now: datetime,
                        *, span: timedelta = timedelta(hours=24)) -> dict[str, float]:
    """Each webhook's mean delivery duration (ms) over ``span`` before ``now``, from the hourly rollup.

    Failed deliveries' durations when the webhook has any (a redelivery of a failure meets the same
    endpoint), else all of them; webhooks without traffic in the span are left out.
    """
    out: dict[str, float] = {}
    since = format_timestamp(now - span)[:13]
    for webhook_id in sorted(set(webhook_ids)):
        rows = conn.execute(
            "SELECT success, SUM(duration_sum), SUM(deliveries) FROM delivery_hourly WHERE webhook_id = ? AND hour >= ? "
            "GROUP BY success", (webhook_id, since),
        ).fetchall()
        by = {bool(r[0]): (r[1] or 0, r[2] or 0) for r in rows}
        total, count = by.get(False, (0, 0))
        if not count:
            total = sum(v[0] for v in by.values())
            count = sum(v[1] for v in by.values())
        if count:
            out[webhook_id] = total / count
    return out


def estimate_seconds(plan: BulkPlan, durations_ms: Mapping[str, float], *, per_minute: int = DEFAULT_PER_MINUTE,
                     timeout_s: float = ENDPOINT_LIMIT_S) -> float:
    """How long sending ``plan`` takes: each call waits for the endpoint, and each webhook keeps to the rate.

    Calls go one after another, each taking the webhook's recent mean duration (``durations_ms``,
    bounded by ``timeout_s`` and MoeGo's 30 s endpoint limit; a webhook without one counts 1 s) plus
    :data:`CALL_OVERHEAD_S`; a webhook with more than ``per_minute`` entries also waits a minute per
    ``per_minute``. The estimate is the longer of the two.
    """
    bound = min(timeout_s, ENDPOINT_LIMIT_S)
    per_hook = collections.Counter(c.webhook_id for c in plan.to_send)
    if not per_hook:
        return 0.0

    def call_s(webhook_id: str) -> float:
        return min(durations_ms.get(webhook_id, 1000.0) / 1000.0, bound) + CALL_OVERHEAD_S

    calls = sum(n * call_s(w) for w, n in per_hook.items())
    rate = max(60.0 * ((n - 1) // per_minute) + call_s(w) for w, n in per_hook.items())
    return max(calls, rate)


# -- the job record ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCounts:
    """A batch's entries by outcome, from its audit rows (``in_flight``: requests not answered yet)."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    in_flight: int = 0

    @property
    def done(self) -> int:
        """Entries with an outcome."""
        return self.succeeded + self.failed + self.skipped

    @property
    def summary(self) -> str:
        """``12 succeeded, 3 failed, 5 skipped``: the words the screen, the toast and the audit share."""
        return f"{self.succeeded:,} succeeded, {self.failed:,} failed, {self.skipped:,} skipped"


@dataclass(frozen=True)
class BulkJob:
    """A bulk redelivery job as stored, with its counts read from the audit rows."""

    id: str
    created_at: datetime
    requested_by: str
    state: str  # queued | running | done | cancelled | failed
    total: int
    estimate_s: float | None
    cancel_requested: bool
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    counts: JobCounts = field(default_factory=JobCounts)
    sync_lines: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.state in _ACTIVE

    def elapsed_s(self, now: datetime) -> float:
        """Seconds since it started (to its end when finished); 0 before it starts."""
        if self.started_at is None:
            return 0.0
        return max(0.0, ((self.finished_at or now) - self.started_at).total_seconds())

    def remaining_s(self, now: datetime) -> float | None:
        """Seconds still to go: from the pace so far once a few entries are done, else from the estimate."""
        if not self.active:
            return 0.0
        left = max(0, self.total - self.counts.done)
        elapsed = self.elapsed_s(now)
        if self.counts.done >= 3 and elapsed > 0:
            return elapsed / self.counts.done * left
        if self.estimate_s is None:
            return None
        share = left / self.total if self.total else 0.0
        return max(0.0, self.estimate_s * share - (elapsed if self.counts.done == 0 else 0.0))


_JOB_COLUMNS = ("id, created_at, requested_by, state, total, estimate_s, cancel_requested, started_at, finished_at, "
                "error, sync_lines")


def job_counts(conn: sqlite3.Connection, batch_id: str) -> JobCounts:
    """A batch's audit rows counted by outcome (see :class:`JobCounts`)."""
    row = conn.execute(
        "SELECT "
        " COALESCE(SUM(outcome = 'sent' AND new_success = 1), 0),"
        " COALESCE(SUM((outcome = 'failed' AND COALESCE(error, '') != ?) OR (outcome = 'sent' AND COALESCE(new_success, 0) = 0)), 0),"
        " COALESCE(SUM(outcome = 'skipped'), 0),"
        " COALESCE(SUM(outcome = 'failed' AND error = ?), 0) "
        "FROM redeliveries WHERE batch_id = ?",
        (IN_FLIGHT, IN_FLIGHT, batch_id),
    ).fetchone()
    return JobCounts(*(int(v) for v in row))


def _job(conn: sqlite3.Connection, row: Sequence) -> BulkJob:
    lines = tuple(json.loads(row[10])) if row[10] else ()
    return BulkJob(
        id=row[0], created_at=parse_timestamp(row[1]), requested_by=row[2], state=row[3], total=int(row[4]),
        estimate_s=row[5], cancel_requested=bool(row[6]), started_at=_time(row[7]), finished_at=_time(row[8]),
        error=row[9], counts=job_counts(conn, row[0]), sync_lines=lines,
    )


def load_job(conn: sqlite3.Connection, job_id: str) -> BulkJob | None:
    """The job ``job_id``, or ``None``."""
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM bulk_jobs WHERE id = ?", (job_id,)).fetchone()
    return _job(conn, row) if row else None


def active_jobs(conn: sqlite3.Connection) -> list[BulkJob]:
    """Queued and running jobs, oldest first."""
    rows = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM bulk_jobs WHERE state IN ('queued', 'running') ORDER BY created_at, id"
    ).fetchall()
    return [_job(conn, r) for r in rows]


def latest_job(conn: sqlite3.Connection) -> BulkJob | None:
    """The job created last, whatever its state."""
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM bulk_jobs ORDER BY created_at DESC, id DESC LIMIT 1").fetchone()
    return _job(conn, row) if row else None


def _plan_json(plan: BulkPlan, incident_id: int | None = None) -> str:
    def c(candidate: Candidate) -> list[str]:
        return [candidate.delivery_id, candidate.webhook_id, candidate.event_id, candidate.delivered_at]

    data: dict[str, object] = {"to_send": [c(x) for x in plan.to_send],
                               "skipped": [[*c(x), why] for x, why in plan.skipped]}
    if incident_id is not None:
        data["incident"] = incident_id
    return json.dumps(data)


def _incident_of(text: str) -> int | None:
    """The incident a job's plan recovers (``submit_bulk(incident_id=...)``), if any."""
    value = json.loads(text).get("incident")
    return value if isinstance(value, int) else None


def _plan(text: str) -> BulkPlan:
    data = json.loads(text)
    return BulkPlan(to_send=tuple(Candidate(*row[:4]) for row in data["to_send"]),
                    skipped=tuple((Candidate(*row[:4]), row[4]) for row in data["skipped"]))


def submit_bulk(db_path: str | Path, plan: BulkPlan, *, requested_by: str, estimate_s: float | None = None,
                now: datetime | None = None, incident_id: int | None = None) -> str:
    """Store ``plan`` as a queued job and return its id (also its audit ``batch_id``); nothing is sent here.

    With ``incident_id`` the job recovers that incident: its history records the job queued (here, in the
    same transaction) and how it ended (by the worker, in the transaction that ends the job).
    """
    job_id = new_batch_id()
    now = now or _utcnow()
    with archive.open_archive(db_path) as conn, archive.transaction(conn):
        conn.execute(
            "INSERT INTO bulk_jobs (id, created_at, requested_by, state, plan, total, estimate_s) "
            "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            (job_id, format_timestamp(now), requested_by, _plan_json(plan, incident_id), plan.total, estimate_s),
        )
        if incident_id is not None:
            _note_incident(conn, incident_id, "redelivery_queued", requested_by, now,
                           f"{len(plan.to_send):,} failed events queued as bulk job {job_id} "
                           f"({len(plan.skipped):,} skipped)")
    return job_id


def _note_incident(conn: sqlite3.Connection, incident_id: int | None, action: str, actor: str, now: datetime,
                   note: str) -> None:
    if incident_id is None:
        return
    from .alerts.incidents import add_event  # the alerts package loads its notifiers: only when a job needs it

    add_event(conn, incident_id, action, actor, now, note)


def request_cancel(db_path: str | Path, job_id: str) -> None:
    """Ask the worker to stop ``job_id`` before its next entry (a queued job ends without sending)."""
    with archive.open_archive(db_path) as conn, archive.transaction(conn):
        conn.execute("UPDATE bulk_jobs SET cancel_requested = 1 WHERE id = ? AND state IN ('queued', 'running')",
                     (job_id,))


# -- working a job ----------------------------------------------------------------------------------


def lease_for(settings: Settings) -> timedelta:
    """How long a worker's lease lasts: longer than one call can take (two client timeouts and a margin), since
    the lease is renewed between calls; a live worker waiting on a slow endpoint never loses its job."""
    return max(LEASE, timedelta(seconds=2 * settings.timeout_s + 30))


def claim_job(conn: sqlite3.Connection, owner: str, now: datetime, *, lease: timedelta = LEASE) -> str | None:
    """Take the oldest active job that no live worker holds (queued, or running with its lease run out)."""
    stamp = format_timestamp(now)
    with archive.transaction(conn):
        row = conn.execute(
            "SELECT id FROM bulk_jobs WHERE state IN ('queued', 'running') "
            "AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?) ORDER BY created_at, id LIMIT 1",
            (stamp, owner),
        ).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE bulk_jobs SET lease_owner = ?, lease_until = ? WHERE id = ?",
                     (owner, format_timestamp(now + lease), row[0]))
    return row[0]


def _remaining(conn: sqlite3.Connection, job_id: str, plan: BulkPlan) -> BulkPlan:
    """``plan`` without the entries that already have an audit row in the batch (they were sent or decided)."""
    audited = collections.Counter(
        r[0] for r in conn.execute("SELECT delivery_id FROM redeliveries WHERE batch_id = ?", (job_id,))
    )

    def fresh(candidate: Candidate) -> bool:
        if audited[candidate.delivery_id] > 0:
            audited[candidate.delivery_id] -= 1
            return False
        return True

    skipped = tuple((c, why) for c, why in plan.skipped if fresh(c))  # written first, as bulk_redeliver does
    return BulkPlan(to_send=tuple(c for c in plan.to_send if fresh(c)), skipped=skipped)


def work_job(settings: Settings, job_id: str, *, owner: str, client: MoeGoClient | None = None,
             clock: Callable[[], datetime] = _utcnow) -> BulkJob | None:
    """Send what is left of job ``job_id`` (held by ``owner``), then re-sync; returns the job as it ended.

    Keeps the lease fresh while it runs (between calls; :func:`lease_for` outlasts any one call) and stops
    before the next entry when a cancel is asked or the lease went to another worker. MoeGo's errors end
    up in the audit rows; an archive error fails the job with one line. A worker that stalls past its
    lease while alive and then finds the job taken over stops without auditing its unsent entries: the
    new holder sends and audits them, so every entry keeps one audit row.
    """
    conn = archive.connect(settings.db_path)
    try:
        row = conn.execute("SELECT plan, started_at, cancel_requested FROM bulk_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        plan = _remaining(conn, job_id, _plan(row[0]))
        incident_id = _incident_of(row[0])
        now = clock()
        with archive.transaction(conn):
            # A request in flight when the last worker died has no answer on record: failed, and never re-sent.
            conn.execute("UPDATE redeliveries SET error = ? WHERE batch_id = ? AND outcome = 'failed' AND error = ?",
                         (INTERRUPTED, job_id, IN_FLIGHT))
            conn.execute("UPDATE bulk_jobs SET state = 'running', started_at = COALESCE(started_at, ?) WHERE id = ?",
                         (format_timestamp(now), job_id))
        last_beat = [now]
        lease = lease_for(settings)
        taken_over = [False]

        def stop() -> bool:
            current = clock()
            cancel, holder = conn.execute("SELECT cancel_requested, lease_owner FROM bulk_jobs WHERE id = ?",
                                          (job_id,)).fetchone()
            if holder != owner:
                taken_over[0] = True
                return True
            if current - last_beat[0] > timedelta(seconds=5):
                with archive.transaction(conn):
                    conn.execute("UPDATE bulk_jobs SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                                 (format_timestamp(current + lease), job_id, owner))
                last_beat[0] = current
            return bool(cancel)

        try:
            run = bulk_redeliver_and_resync(settings, plan, batch_id=job_id, cancelled=stop,
                                            handed_over=lambda: taken_over[0],
                                            requested_by=_requested_by(conn, job_id), client=client)
        except (archive.ArchiveError, sqlite3.Error, OSError) as exc:
            ended = clock()
            with archive.transaction(conn):
                conn.execute("UPDATE bulk_jobs SET state = 'failed', finished_at = ?, error = ?, lease_owner = NULL, "
                             "lease_until = NULL WHERE id = ?",
                             (format_timestamp(ended), f"the job stopped: {exc}", job_id))
                _note_incident(conn, incident_id, "redelivered", _requested_by(conn, job_id), ended,
                               f"bulk job {job_id} stopped: {exc}; {job_counts(conn, job_id).summary}")
            return load_job(conn, job_id)
        holder = conn.execute("SELECT lease_owner FROM bulk_jobs WHERE id = ?", (job_id,)).fetchone()[0]
        if holder != owner:  # another worker took over: it finishes the job
            return load_job(conn, job_id)
        state = "cancelled" if run.result.cancelled else "done"
        ended = clock()
        with archive.transaction(conn):
            conn.execute(
                "UPDATE bulk_jobs SET state = ?, finished_at = ?, sync_lines = ?, lease_owner = NULL, lease_until = NULL "
                "WHERE id = ?",
                (state, format_timestamp(ended), json.dumps(run.sync_lines), job_id),
            )
            _note_incident(conn, incident_id, "redelivered", _requested_by(conn, job_id), ended,
                           f"bulk job {job_id} {'was cancelled' if state == 'cancelled' else 'ended'}: "
                           f"{job_counts(conn, job_id).summary}")
        return load_job(conn, job_id)
    finally:
        conn.close()


def _requested_by(conn: sqlite3.Connection, job_id: str) -> str:
    return conn.execute("SELECT requested_by FROM bulk_jobs WHERE id = ?", (job_id,)).fetchone()[0]


def work_pending(settings: Settings, *, owner: str, client: MoeGoClient | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> list[BulkJob]:
    """Work every active job this worker can claim, one after another; returns how each ended."""
    done: list[BulkJob] = []
    while True:
        with archive.open_archive(settings.db_path) as conn:
            job_id = claim_job(conn, owner, clock(), lease=lease_for(settings))
        if job_id is None:
            return done
        job = work_job(settings, job_id, owner=owner, client=client, clock=clock)
        if job is not None:
            done.append(job)
        if job is None or job.active:  # lost the lease to another worker: leave the rest to it
            return done


class JobWorker:
    """A daemon thread that works the archive's bulk jobs: checks every ``poll_s`` seconds, never raises.

    The dashboard process starts one (``dashboard/app.py``) and so does ``moego-monitor schedule``, so a
    job goes on even while nobody has the dashboard open; leases keep two workers off the same job. The
    thread ends with :meth:`stop` or with the process; a job left by a stopped worker is taken over when
    its lease runs out, without sending any entry twice.
    """

    def __init__(self, settings: Settings, *, poll_s: float = 1.0) -> None:
        self.settings = settings
        self.poll_s = poll_s
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moego-bulk-jobs", daemon=True)

    def start(self) -> "JobWorker":
        """Start the thread (once)."""
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to end after the current job's next entry, and wait up to ``timeout_s``."""
        self._stop.set()
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            if not Path(self.settings.db_path).exists():  # not created yet (a first collection will)
                continue
            try:
                work_pending(self.settings, owner=self.owner)
            except Exception:  # noqa: BLE001 - a worker thread must survive anything and try again later
                log.exception("bulk job worker: a pass failed; trying again in %.0f s", self.poll_s)
