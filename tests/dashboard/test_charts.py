"""Charts: each figure draws the numbers it is given, with the agreed colours and labels."""

from __future__ import annotations

from datetime import timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd

from collectors.archive import status
from dashboard import charts, coverage, queries
from collectors.archive.filters import Filters
from dashboard.stats import time_series

from tests.seed import ALPHA, BETA, NOW

BERLIN = ZoneInfo("Europe/Berlin")


def test_failure_breakdowns(conn) -> None:
    window = Filters().window(NOW)
    by_hook = queries.failures_by(conn, Filters(), window, "webhook_id")
    fig = charts.failures_figure(by_hook, "webhook_id", "Failures by webhook")
    bar = fig.data[0]
    assert list(bar.y) == [ALPHA, BETA] and list(bar.x) == [6, 8]  # largest drawn on top (last)
    status = charts.status_figure(queries.failures_by_status(conn, Filters(), window)).data[0]
    assert "no response" in list(status.y) and dict(zip(status.y, status.x))["500"] == 9


def test_coverage_timeline_shows_gaps(conn) -> None:
    since, until = NOW - timedelta(days=30), NOW
    intervals = status.coverage_intervals(conn, since, until, [ALPHA, BETA])
    gaps = coverage.coverage_gaps(conn, since, until, now=NOW, webhook_ids=[ALPHA, BETA])
    fig = charts.coverage_figure(intervals, gaps, since, until, BERLIN)
    kinds = {t.name: t for t in fig.data}
    assert set(kinds) == {"archived", "gap", "deleted by MoeGo", "not collected yet"}
    archived = kinds["archived"]
    assert list(archived.y).count(ALPHA) == 2 and list(archived.y).count(BETA) == 1
    gap_hours = sum(kinds["gap"].x) / 3_600_000
    assert round(gap_hours, 3) == round(gaps.loc[gaps["kind"] == "open", "hours"].sum(), 3) == 12 + 120
    assert list(fig.layout.yaxis.categoryarray) == [ALPHA, BETA]


def test_attempts_timeline_rings_the_current_entry(conn) -> None:
    attempts = queries.event_attempts(conn, "evt_retry")
    fig = charts.attempts_figure(attempts, "dlv_r2")
    ok, failed = fig.data
    assert (ok.name, len(ok.x), failed.name, len(failed.x)) == ("succeeded", 1, "failed", 2)
    assert list(failed.marker.size) == [10, 16]  # dlv_r1, then dlv_r2 (the one shown) larger
    when = attempts.loc[attempts["id"] == "dlv_r3", "delivered_at"].iloc[0]
    assert pd.Timestamp(ok.x[0]) == when.tz_localize(None)


def test_empty_inputs_draw_empty_figures() -> None:
    empty = pd.DataFrame({"error_class": pd.Series(dtype="object"), "failures": pd.Series(dtype="int64")})
    assert len(charts.failures_figure(empty, "error_class", "x").data[0].y) == 0
    fig = charts.coverage_figure({}, pd.DataFrame(columns=["webhook_id", "start", "end", "hours", "expires_at", "expired", "kind"]),
                                 NOW - timedelta(days=1), NOW, BERLIN)
    assert len(fig.data) == 0


def panel_titles(spec: dict) -> list[str]:
    """The titles a reader sees above the trend chart's panels, top down (its text marks)."""
    return [layer["mark"]["text"] for layer in spec["layer"] if layer["mark"]["type"] == "text"]


def tooltip_fields(spec: dict) -> list[list[str]]:
    """The fields of every tooltip the trend chart shows, one list per layer that shows one."""
    return [[t["field"] for t in layer["encoding"]["tooltip"]] for layer in spec["layer"]
            if "tooltip" in layer.get("encoding", {})]


def test_trends_draw_volume_rate_and_latency_per_bucket_in_the_users_zone(conn) -> None:
    series = time_series(conn, Filters(), Filters().window(NOW), "hour", BERLIN)
    data, spec = charts.trends_chart(series, "hour")
    assert panel_titles(spec) == ["Deliveries per hour", "Success rate per hour", "Latency percentiles per hour"]
    # The numbers of the series, bucket by bucket; times as Berlin's wall clock (drawn on a UTC scale).
    assert list(data["succeeded"]) == list(series["successes"]) and list(data["failed"]) == list(series["failures"])
    assert list(data["deliveries"]) == list(series["deliveries"])
    assert (data["succeeded"].sum(), data["failed"].sum()) == (39, 14)  # the seed's day
    assert [t.isoformat() for t in data["time"]][:2] == [t.replace(tzinfo=timezone.utc).isoformat()
                                                            for t in series["time"]][:2]
    assert str(series["time"].iloc[0].tzinfo) == "Europe/Berlin" and data["time"].iloc[0].utcoffset() == timedelta(0)
    rate = data["success_rate"].dropna()
    assert list(rate) == list((series["success_rate"] * 100).dropna()) and len(rate) < len(data)  # empty hours: gaps
    for p in ("p50", "p95", "p99"):
        pd.testing.assert_series_equal(data[p], series[f"{p}_ms"], check_names=False)
    volume = spec["layer"][0]
    colours = volume["encoding"]["color"]["scale"]
    assert dict(zip(colours["domain"], colours["range"])) == {
        "succeeded": charts.SUCCESS_COLOR, "failed": charts.FAILURE_COLOR, "p50": "#1565c0", "p95": "#ef6c00",
        "p99": "#6a1b9a"}
    assert volume["encoding"]["x"]["timeUnit"] == "utcyearmonthdatehours"
    # The panels are bands of one plot, top down, not overlapping, under one time axis with one zoom.
    shares = [[float(end["expr"].split("*")[1]) for end in layer["encoding"]["y"]["scale"]["range"]]
              for layer in spec["layer"] if "field" in layer.get("encoding", {}).get("y", {})]
    assert len(shares) == 3 and all(bottom > top for bottom, top in shares)
    assert all(shares[i][0] < shares[i + 1][1] for i in range(2)) and shares[-1][0] <= 1
    assert spec["resolve"]["scale"]["y"] == "independent" and "x" not in spec["resolve"]["scale"]
    assert [p["name"] for layer in spec["layer"] for p in layer.get("params", []) if p.get("bind") == "scales"] == ["zoom"]
    # Pointing at any panel shows every figure of the bucket: one hover layer over the three bands.
    assert tooltip_fields(spec) == [["time", "deliveries", "succeeded", "failed", "success_rate", "p50", "p95", "p99"]]


def test_trends_leave_out_a_rate_the_filter_fixes(conn) -> None:
    series = time_series(conn, Filters(outcome="failed"), Filters().window(NOW), "day", BERLIN)
    data, spec = charts.trends_chart(series, "day", with_rate=False)
    assert panel_titles(spec) == ["Deliveries per day", "Latency percentiles per day"]
    assert all("success_rate" not in fields for fields in tooltip_fields(spec))
    assert data["succeeded"].sum() == 0 and data["failed"].sum() == series["failures"].sum() > 0
