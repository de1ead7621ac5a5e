"""Prometheus text served over loopback, read back with prometheus-client's own parser."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.alerts.metrics import serve_metrics
from tests.conftest import free_port

from .conftest import Archive


def test_metrics_per_webhook_from_the_archive(arch: Archive) -> None:
    now = datetime.now(timezone.utc)
    arch.webhook("wh_1", "https://user:pw@receiver.example/hooks/one?token=abc", synced=now)
    arch.deliveries("wh_1", [(now - timedelta(hours=2, minutes=m), m % 4 != 0) for m in range(0, 40)], duration_ms=120)
    arch.run(now)
    port = free_port()
    stop = serve_metrics(arch.path, port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    outcomes = {(s.labels["webhook_id"], s.labels["endpoint"], s.labels["outcome"]): s.value
                for s in families["moego_monitor_deliveries_24h"].samples}
    assert outcomes == {("wh_1", "receiver.example/hooks/one", "success"): 30.0,
                        ("wh_1", "receiver.example/hooks/one", "failed"): 10.0}
    buckets = {s.labels["le"]: s.value for s in families["moego_monitor_delivery_latency_ms_24h"].samples
               if s.name.endswith("_bucket")}
    assert buckets["100"] == 0 and buckets["150"] == 40 and buckets["+Inf"] == 40
    risk = [s.value for s in families["moego_monitor_window_at_risk_seconds"].samples]
    assert risk == [0.0]
    assert "token=abc" not in text and "user:pw" not in text


def test_a_busy_metrics_port_is_an_error(arch: Archive) -> None:
    port = free_port()
    stop = serve_metrics(arch.path, port)
    try:
        with pytest.raises(OSError):
            serve_metrics(arch.path, port)
    finally:
        stop()
