"""Bulk redelivery jobs in the frame of every page: progress, elapsed and remaining time, Cancel, the result.

``app.py`` calls :func:`render_jobs` before the page: while a job is queued or running, a fragment
redraws its progress every :data:`REFRESH_S` seconds with a Cancel button (``job_cancel``); when a job
this session watches ends, its summary is shown (``job_result``) and toasted once. With no job to follow,
a page only looks every :data:`IDLE_REFRESH_S` seconds for one started elsewhere (a fragment rerun every
2 s would land in the middle of every page load, and keep the browser redrawing for nothing). Every number comes
from the job's audit rows (:class:`collectors.jobs.JobCounts`), so screen, toast and the audit agree.
"""

from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from collectors.jobs import BulkJob, request_cancel

from . import reads, ui

__all__ = ["REFRESH_S", "IDLE_REFRESH_S", "watch", "duration_text", "progress_text", "result_text", "render_jobs"]

#: How often the progress redraws (seconds).
REFRESH_S = 2.0
#: How often a page with no job to follow looks for one started elsewhere (seconds).
IDLE_REFRESH_S = 10.0
_WATCHED = "_jobs_watched"  # job id -> reported (the summary was toasted)


def watch(job_id: str) -> None:
    """Follow ``job_id`` in this session: its result is shown and toasted when it ends."""
    st.session_state.setdefault(_WATCHED, {})[job_id] = False


def duration_text(seconds: float | None) -> str:
    """``under a minute``, ``about 4 min``, ``about 1 h 20 min``; ``unknown`` for ``None``."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    return f"about {minutes} min" if minutes < 60 else f"about {minutes // 60} h {minutes % 60} min"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_text(job: BulkJob, now: datetime) -> str:
    """One line of a running job: done of total, the outcomes so far, elapsed and remaining time."""
    counts = job.counts
    text = f"Bulk redelivery {job.id}: {counts.done:,} of {job.total:,} done: {counts.summary}"
    if job.state == "queued":
        return text + " · waiting for the worker"
    if job.cancel_requested:
        return text + " · cancelling before the next entry"
    remaining = job.remaining_s(now)
    left = "" if remaining is None else f", {duration_text(remaining)} left"
    return text + f" · {_clock(job.elapsed_s(now))} elapsed{left}"


def result_text(job: BulkJob) -> str:
    """The line a finished job is reported with (on screen and in the toast)."""
    verb = {"done": "finished", "cancelled": "cancelled", "failed": "stopped"}.get(job.state, job.state)
    line = f"Bulk redelivery {verb}: {job.counts.summary}."
    return line + (f" {job.error}" if job.error else "")


def _cancel(db_path: str, job_id: str) -> None:
    request_cancel(db_path, job_id)


@st.fragment(run_every=REFRESH_S)
def _live(db_path: str) -> None:
    now = datetime.now(timezone.utc)
    active = reads.bulk_jobs_active(db_path)
    watched: dict[str, bool] = st.session_state.setdefault(_WATCHED, {})
    for job in active:
        watched.setdefault(job.id, False)  # a job started elsewhere is followed too
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.progress(min(1.0, job.counts.done / job.total) if job.total else 1.0, text=progress_text(job, now))
        right.button("Cancel", key=f"job_cancel_{job.id}", icon=":material/cancel:", on_click=_cancel,
                     args=(db_path, job.id), disabled=job.cancel_requested,
                     help="Stops before the next entry; the entries not sent yet are audited as skipped.")
    ended = [job_id for job_id, reported in watched.items() if not reported and job_id not in {j.id for j in active}]
    if ended:  # a job ended since the last redraw: report it once and redraw the page with fresh numbers
        for job_id in ended:
            job = reads.bulk_job(db_path, job_id)
            watched[job_id] = True
            if job is not None:
                st.session_state["_job_result"] = job.id
                st.toast(result_text(job), icon=":material/done_all:" if job.state == "done" else ":material/cancel:")
        reads.clear()
        st.rerun(scope="app")


@st.fragment(run_every=IDLE_REFRESH_S)
def _idle(db_path: str) -> None:
    """No job to follow: when one was started elsewhere, redraw the page so its progress shows."""
    if reads.bulk_jobs_active(db_path):
        st.rerun(scope="app")


def render_jobs(ctx: ui.Context) -> None:
    """The job panel: live progress of active jobs, and the result of the last one this session watched."""
    unreported = any(not reported for reported in st.session_state.get(_WATCHED, {}).values())
    if unreported or reads.bulk_jobs_active(ctx.db_path):
        _live(ctx.db_path)
    else:
        _idle(ctx.db_path)
    shown = st.session_state.get("_job_result")
    if shown:
        job = reads.bulk_job(ctx.db_path, shown)
        if job is not None and not job.active:
            if job.counts.failed or job.state == "failed":
                st.error(result_text(job), icon=":material/error:")
            elif job.state == "done":
                st.success(result_text(job), icon=":material/done_all:")
            else:
                st.warning(result_text(job), icon=":material/cancel:")
            for line in job.sync_lines:
                st.caption(line)
            st.button("Dismiss", key="job_result_dismiss", on_click=st.session_state.pop, args=("_job_result", None))
