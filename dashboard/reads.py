"""The dashboard's cached read layer: the one module of ``dashboard/`` that opens the archive.

Each function opens the archive read-only for the call, runs one pure query of :mod:`dashboard.queries`
(or of :mod:`collectors.archive`) on it, and returns plain data. The query functions are cached with
``st.cache_data`` for :data:`CACHE_TTL_S` seconds, keyed by their arguments (the window's end is rounded
to the minute, so keys stay stable for a minute); follow any of them with "go to definition". Writes
never happen here: a page that changes something calls a collector-side function (redelivery, bulk,
test event, collect) and then :func:`clear`.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Literal, Sequence
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from collectors import archive
from collectors.archive import compaction, status, views
from collectors.archive.export import export_csv
from collectors.archive.filters import Bucket, Filters, Window
from collectors import jobs
from collectors.alerts import incidents as alert_incidents
from collectors.alerts.recovery import recovery_plan
from collectors.bulk import BulkPlan, batch_counts, plan_bulk

from . import coverage, queries, stats
from . import tail as live_tail

__all__ = [
    "CACHE_TTL_S", "clear", "tiles", "search_window", "time_series", "failures_by", "failures_by_status", "webhook_health",
    "count_deliveries", "delivery_page", "delivery", "event_attempts", "redeliveries_of", "redelivered_attempts",
    "filter_options",
    "saved_views", "webhooks", "collector_runs", "sync_states", "collection_state", "at_risk", "coverage_intervals",
    "coverage_gaps",
    "bulk_plan", "bulk_batch_counts", "bulk_estimate", "bulk_job", "bulk_jobs_active", "tail", "csv_bytes", "upgrade_note",
    "incidents", "incident_count", "incident_history", "incident_messages", "incident_recovery_plan",
]

#: How long a query result is reused (seconds); live tiles refresh on this rhythm too.
CACHE_TTL_S = 60

#: Shown (with the time taken) wherever a read is not cached yet: the page shows it works instead of placeholders.
READING = "Reading the archive…"
_cached = st.cache_data(ttl=CACHE_TTL_S, show_spinner=READING, max_entries=128)


def clear() -> None:
    """Forget every cached read (after the dashboard itself changed the archive)."""
    for function in (tiles, search_window, time_series, failures_by, failures_by_status, webhook_health, count_deliveries,
                     delivery_page, delivery, event_attempts, redeliveries_of, redelivered_attempts, filter_options,
                     saved_views, webhooks, collector_runs, sync_states, collection_state, at_risk, coverage_intervals,
                     coverage_gaps):
        function.clear()


# -- overview ---------------------------------------------------------------------------------------


@_cached
def tiles(db_path: str, filters: Filters, window: Window, now: datetime) -> queries.Tiles:
    """:func:`dashboard.queries.tiles`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.tiles(conn, filters, window, now)


@_cached
def search_window(db_path: str, filters: Filters, window: Window) -> queries.SearchWindow:
    """:func:`dashboard.queries.search_window`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.search_window(conn, filters, window)


@_cached
def time_series(db_path: str, filters: Filters, window: Window, bucket: Bucket, tz: ZoneInfo) -> pd.DataFrame:
    """:func:`dashboard.stats.time_series`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return stats.time_series(conn, filters, window, bucket, tz)


@_cached
def failures_by(db_path: str, filters: Filters, window: Window, dim: str) -> pd.DataFrame:
    """:func:`dashboard.queries.failures_by`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.failures_by(conn, filters, window, dim)


@_cached
def failures_by_status(db_path: str, filters: Filters, window: Window) -> pd.DataFrame:
    """:func:`dashboard.queries.failures_by_status`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.failures_by_status(conn, filters, window)


@_cached
def webhook_health(db_path: str, filters: Filters, window: Window) -> pd.DataFrame:
    """:func:`dashboard.queries.webhook_health`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.webhook_health(conn, filters, window)


# -- deliveries -------------------------------------------------------------------------------------


@_cached
def count_deliveries(db_path: str, filters: Filters, window: Window) -> queries.Count:
    """:func:`dashboard.queries.count_deliveries`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.count_deliveries(conn, filters, window)


@_cached
def delivery_page(db_path: str, filters: Filters, window: Window, *, after: queries.Cursor | None = None,
                  order: Literal["newest", "oldest"] = "newest", limit: int = 50) -> queries.Page:
    """:func:`dashboard.queries.delivery_page`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.delivery_page(conn, filters, window, after=after, order=order, limit=limit)


@_cached
def delivery(db_path: str, delivery_id: str) -> dict | None:
    """:func:`dashboard.queries.delivery`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.delivery(conn, delivery_id)


@_cached
def event_attempts(db_path: str, event_id: str) -> pd.DataFrame:
    """:func:`dashboard.queries.event_attempts`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.event_attempts(conn, event_id)


@_cached
def redeliveries_of(db_path: str, delivery_id: str) -> pd.DataFrame:
    """:func:`dashboard.queries.redeliveries_of`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.redeliveries_of(conn, delivery_id)


@_cached
def redelivered_attempts(db_path: str, delivery_ids: tuple[str, ...]) -> dict[str, str]:
    """:func:`dashboard.queries.redelivered_attempts`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.redelivered_attempts(conn, delivery_ids)


@_cached
def filter_options(db_path: str, since: datetime) -> queries.FilterOptions:
    """:func:`dashboard.queries.filter_options`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.filter_options(conn, since)


# -- webhooks and archive health --------------------------------------------------------------------


@_cached
def saved_views(db_path: str) -> list[views.SavedView]:
    """:func:`collectors.archive.views.saved_views`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return views.saved_views(conn)


@_cached
def webhooks(db_path: str) -> pd.DataFrame:
    """:func:`dashboard.queries.webhooks`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.webhooks(conn)


@_cached
def collector_runs(db_path: str, limit: int = 20) -> pd.DataFrame:
    """:func:`dashboard.queries.collector_runs`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.collector_runs(conn, limit=limit)


@_cached
def sync_states(db_path: str) -> pd.DataFrame:
    """:func:`dashboard.queries.sync_states`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return queries.sync_states(conn)


@_cached
def collection_state(db_path: str) -> status.CollectionState:
    """:func:`collectors.archive.status.collection_state`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return status.collection_state(conn)


@_cached
def at_risk(db_path: str, now: datetime, webhook_ids: Sequence[str] | None = None) -> coverage.AtRisk:
    """:func:`dashboard.coverage.at_risk`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return coverage.at_risk(conn, now, webhook_ids=webhook_ids)


@_cached
def coverage_intervals(db_path: str, since: datetime, until: datetime,
                       webhook_ids: Sequence[str] | None = None) -> dict:
    """:func:`collectors.archive.status.coverage_intervals`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return status.coverage_intervals(conn, since, until, webhook_ids)


@_cached
def coverage_gaps(db_path: str, since: datetime, until: datetime, now: datetime,
                  webhook_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`dashboard.coverage.coverage_gaps`."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return coverage.coverage_gaps(conn, since, until, now=now, webhook_ids=webhook_ids)


# -- not cached: reads for an action about to happen ------------------------------------------------


def bulk_plan(db_path: str, filters: Filters, window: Window, now: datetime, *, limit: int) -> tuple[BulkPlan, bool]:
    """The view's failed entries (at most ``limit``) planned for a bulk redelivery, and whether there were more."""
    with archive.open_archive(db_path, readonly=True) as conn:
        found = queries.failed_candidates(conn, filters, window, limit=limit + 1)
        return plan_bulk(conn, found[:limit], now=now), len(found) > limit


def bulk_batch_counts(db_path: str, batch_id: str) -> dict[str, int]:
    """:func:`collectors.bulk.batch_counts`, read now."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return batch_counts(conn, batch_id)


def bulk_estimate(db_path: str, plan: BulkPlan, now: datetime, *, timeout_s: float) -> float:
    """:func:`collectors.jobs.estimate_seconds` for ``plan``, from each webhook's recent durations."""
    with archive.open_archive(db_path, readonly=True) as conn:
        durations = jobs.recent_durations_ms(conn, [c.webhook_id for c in plan.to_send], now)
    return jobs.estimate_seconds(plan, durations, timeout_s=timeout_s)


def bulk_job(db_path: str, job_id: str) -> jobs.BulkJob | None:
    """:func:`collectors.jobs.load_job`, read now (progress is live)."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return jobs.load_job(conn, job_id)


def bulk_jobs_active(db_path: str) -> list[jobs.BulkJob]:
    """:func:`collectors.jobs.active_jobs`, read now."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return jobs.active_jobs(conn)


def tail(db_path: str, filters: Filters, started: datetime, now: datetime) -> pd.DataFrame:
    """:func:`dashboard.tail.new_entries`, read now (the live tail refreshes on its own)."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return live_tail.new_entries(conn, filters, started, now)


def csv_bytes(db_path: str, filters: Filters, now: datetime, secret_headers: Sequence[str]) -> bytes:
    """The view's CSV (the export's exact bytes) for a browser download.

    Streamlit keeps a download in the server's memory, so the page offers this only for views whose
    count it has checked; larger exports go through ``moego-monitor export``, which streams to a file.
    """
    buffer = io.StringIO(newline="")
    with archive.open_archive(db_path, readonly=True) as conn:
        export_csv(conn, filters, buffer, now=now, secret_headers=secret_headers)
    return buffer.getvalue().encode("utf-8")


@_cached
def upgrade_note(db_path: str) -> str | None:
    """:func:`collectors.archive.compaction.note`: one line while an upgrade of the archive is under way."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return compaction.note(conn)


# -- incidents (read now, never cached: an action on the Incidents page must show at once) ---------------


def incidents(db_path: str, *, active_only: bool = False, limit: int = 200) -> list[alert_incidents.Incident]:
    """:func:`collectors.alerts.incidents.list_incidents`, read now."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return alert_incidents.list_incidents(conn, active_only=active_only, limit=limit)


def incident_count(db_path: str) -> int:
    """:func:`collectors.alerts.incidents.active_count`, read now."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return alert_incidents.active_count(conn)


def incident_history(db_path: str, incident_id: int) -> list[alert_incidents.IncidentEvent]:
    """:func:`collectors.alerts.incidents.history`, read now."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return alert_incidents.history(conn, incident_id)


def incident_messages(db_path: str, incident_id: int) -> list[alert_incidents.Notification]:
    """:func:`collectors.alerts.incidents.notifications`, read now."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return alert_incidents.notifications(conn, incident_id)


def incident_recovery_plan(db_path: str, incident: alert_incidents.Incident, now: datetime) -> BulkPlan:
    """:func:`collectors.alerts.recovery.recovery_plan`: what redelivering the incident's failed events would send."""
    with archive.open_archive(db_path, readonly=True) as conn:
        return recovery_plan(conn, incident, now)
