"""Prometheus metrics for teams with their own monitoring: ``moego-monitor schedule --metrics-port N``.

Served with ``prometheus-client`` on loopback by default (``--metrics-host`` exposes it). Every
scrape reads the archive read-only and bounded: the last 24 hours of the hourly rollup, one seek
for the last successful pass, the status read model for the window at risk, and the unresolved
incidents. No secret is in any label: webhooks are named by id and endpoint host+path.

=====================================================  =======================================================
metric                                                 meaning
=====================================================  =======================================================
``moego_monitor_deliveries_24h{webhook_id,endpoint,outcome}``   deliveries in the last 24 whole hours (``success``/``failed``)
``moego_monitor_delivery_latency_ms_24h{webhook_id}``  gauge histogram of their latency (ms buckets of the rollup)
``moego_monitor_last_successful_pass_timestamp_seconds``  when the last collector pass that synced every webhook ended
``moego_monitor_window_at_risk_seconds{webhook_id}``   seconds of MoeGo's window not archived that expire within 48 h
``moego_monitor_open_incidents{rule}``                 unresolved incidents per rule
=====================================================  =======================================================
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from .. import archive
from ..archive import HISTOGRAM_COLUMNS, LATENCY_BUCKET_BOUNDS_MS
from ..models import format_timestamp, parse_timestamp
from . import status as status_model
from .rules import endpoint_label

__all__ = ["ArchiveMetrics", "registry_for", "serve_metrics"]


class ArchiveMetrics:
    """A prometheus-client collector that reads the archive at ``db_path`` on every scrape."""

    def __init__(self, db_path: str | Path, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.db_path = Path(db_path)
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """The metrics (nothing when the archive is missing or not ready: the scrape stays valid)."""
        try:
            conn = archive.connect(self.db_path, readonly=True)
        except archive.ArchiveError:
            return
        try:
            if archive.schema_version(conn) < archive.SCHEMA_VERSION:
                return
            yield from self._read(conn, self.clock())
        except sqlite3.Error:
            return
        finally:
            conn.close()

    def _read(self, conn, now: datetime) -> Iterator[Metric]:
        endpoints = {r[0]: endpoint_label(r[1]) for r in conn.execute("SELECT id, endpoint_url FROM webhooks")}
        since = format_timestamp(now - timedelta(hours=24))[:13]
        rows = conn.execute(
            f"SELECT webhook_id, success, SUM(deliveries), SUM(duration_sum), "
            f"{', '.join(f'SUM({c})' for c in HISTOGRAM_COLUMNS)} FROM delivery_hourly WHERE hour >= ? "
            f"GROUP BY webhook_id, success", (since,)).fetchall()
        deliveries = GaugeMetricFamily("moego_monitor_deliveries_24h", "Deliveries in the last 24 hours, by outcome.",
                                       labels=["webhook_id", "endpoint", "outcome"])
        per_hook: dict[str, tuple[list[int], int]] = {}
        for webhook_id, success, count, duration_sum, *hist in rows:
            deliveries.add_metric([webhook_id, endpoints.get(webhook_id, ""), "success" if success else "failed"], count)
            buckets, total = per_hook.get(webhook_id, ([0] * len(HISTOGRAM_COLUMNS), 0))
            per_hook[webhook_id] = ([a + (b or 0) for a, b in zip(buckets, hist)], total + (duration_sum or 0))
        yield deliveries
        latency = GaugeHistogramMetricFamily("moego_monitor_delivery_latency_ms_24h",
                                             "Latency of the last 24 hours' deliveries (ms).", labels=["webhook_id"])
        for webhook_id, (buckets, total) in sorted(per_hook.items()):
            running, cumulative = 0, []
            for bound, count in zip([*map(str, LATENCY_BUCKET_BOUNDS_MS), "+Inf"], buckets):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([webhook_id], cumulative, gsum_value=total)
        yield latency
        last = conn.execute("SELECT finished_at FROM collector_runs WHERE outcome = 'ok' AND finished_at IS NOT NULL "
                            "ORDER BY started_at DESC LIMIT 1").fetchone()
        passed = GaugeMetricFamily("moego_monitor_last_successful_pass_timestamp_seconds",
                                   "When the last collector pass that synced every webhook ended (Unix time).")
        if last:
            passed.add_metric([], parse_timestamp(last[0]).timestamp())
        yield passed
        risk = GaugeMetricFamily("moego_monitor_window_at_risk_seconds",
                                 "Seconds of MoeGo's window not archived that it deletes within 48 hours.",
                                 labels=["webhook_id"])
        for hook in status_model.archive_status(conn, now).webhooks:
            if hook.deleted_at is None:
                risk.add_metric([hook.webhook_id], sum((r.end - r.start).total_seconds() for r in hook.at_risk))
        yield risk
        incidents = GaugeMetricFamily("moego_monitor_open_incidents", "Unresolved incidents, by rule.", labels=["rule"])
        for rule, count in conn.execute("SELECT rule, COUNT(*) FROM incidents WHERE state != 'resolved' GROUP BY rule"):
            incidents.add_metric([rule], count)
        yield incidents


def registry_for(db_path: str | Path) -> CollectorRegistry:
    """A registry holding only the archive's metrics (not the process's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArchiveMetrics(db_path))
    return registry


def serve_metrics(db_path: str | Path, port: int, host: str = "127.0.0.1") -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` in a background thread; returns the function that stops it.

    Raises ``OSError`` when the port cannot be bound (the caller says so in one line).
    """
    server, thread = start_http_server(port, addr=host, registry=registry_for(db_path))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
