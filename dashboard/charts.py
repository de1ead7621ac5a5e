"""DataFrame -> plotly Figure, one function per chart. Pure: no Streamlit, no archive access.

Inputs are the frames :mod:`dashboard.queries` returns, with times already in the user's zone (or
a ``tz`` to convert to); they are drawn as that zone's wall-clock time. Colours mean the same on every chart: green
for success or coverage, red for failure or a gap.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from collectors.archive.coverage import Interval

__all__ = [
    "SUCCESS_COLOR",
    "FAILURE_COLOR",
    "volume_figure",
    "success_rate_figure",
    "latency_figure",
    "trends_figure",
    "failures_figure",
    "status_figure",
    "coverage_figure",
    "attempts_figure",
]

SUCCESS_COLOR = "#2e7d32"
FAILURE_COLOR = "#c62828"
_PERCENTILE_COLORS = {"p50_ms": "#1565c0", "p95_ms": "#ef6c00", "p99_ms": "#6a1b9a"}
_BUCKET_WORD = {"minute": "minute", "hour": "hour", "day": "day"}


def _wall(times: pd.Series) -> pd.Series:
    """Aware timestamps as naive wall-clock times of their own zone.

    plotly turns aware timestamps into UTC; dropping the zone after the UI converted the times to
    the user's zone keeps the axis in the user's local time.
    """
    if getattr(times.dt, "tz", None) is not None:
        return times.dt.tz_localize(None)
    return times


def _layout(fig: go.Figure, title: str, *, y_title: str, x_title: str | None = None, height: int = 320) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
        hovermode="x unified",
    )
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    return fig


def volume_figure(series: pd.DataFrame, bucket: str) -> go.Figure:
    """Deliveries per bucket, stacked: successes under failures. ``series`` as :func:`~dashboard.stats.time_series`."""
    fig = go.Figure(
        [
            go.Bar(name="succeeded", x=_wall(series["time"]), y=series["successes"], marker_color=SUCCESS_COLOR),
            go.Bar(name="failed", x=_wall(series["time"]), y=series["failures"], marker_color=FAILURE_COLOR),
        ]
    )
    fig.update_layout(barmode="stack", bargap=0.1)
    return _layout(fig, f"Deliveries per {_BUCKET_WORD.get(bucket, bucket)}", y_title="deliveries")


def success_rate_figure(series: pd.DataFrame, bucket: str) -> go.Figure:
    """Success rate (%) per bucket; empty buckets leave a gap in the line."""
    fig = go.Figure(
        [
            go.Scatter(
                name="success rate",
                x=_wall(series["time"]),
                y=series["success_rate"] * 100.0,
                mode="lines+markers",
                line={"color": SUCCESS_COLOR},
                connectgaps=False,
                hovertemplate="%{y:.2f}%<extra></extra>",
            )
        ]
    )
    fig = _layout(fig, f"Success rate per {_BUCKET_WORD.get(bucket, bucket)}", y_title="% succeeded")
    fig.update_yaxes(range=[0, 100.5], rangemode="normal")
    return fig


def latency_figure(series: pd.DataFrame, bucket: str) -> go.Figure:
    """p50, p95 and p99 delivery duration (ms) per bucket, estimated from the latency histogram."""
    traces = [
        go.Scatter(
            name=column.removesuffix("_ms"),
            x=_wall(series["time"]),
            y=series[column],
            mode="lines",
            line={"color": color},
            connectgaps=False,
            hovertemplate="%{y:,.0f} ms<extra>" + column.removesuffix("_ms") + "</extra>",
        )
        for column, color in _PERCENTILE_COLORS.items()
    ]
    return _layout(go.Figure(traces), f"Latency percentiles per {_BUCKET_WORD.get(bucket, bucket)}", y_title="ms")


def trends_figure(series: pd.DataFrame, bucket: str, *, with_rate: bool = True) -> go.Figure:
    """Volume, success rate and latency percentiles per bucket in one figure: rows on one time axis.

    The same traces as :func:`volume_figure`, :func:`success_rate_figure` and :func:`latency_figure`; one
    figure instead of three, because a browser draws each figure with its own layout pass (most of a
    cached Overview's time in Chromium). ``with_rate=False`` leaves out the success rate (a filter that
    fixes it, such as outcome = failed, makes it meaningless).
    """
    word = _BUCKET_WORD.get(bucket, bucket)
    parts = [(f"Deliveries per {word}", volume_figure(series, bucket), "deliveries", {"rangemode": "tozero"})]
    if with_rate:
        parts.append((f"Success rate per {word}", success_rate_figure(series, bucket), "% succeeded",
                      {"range": [0, 100.5]}))
    parts.append((f"Latency percentiles per {word}", latency_figure(series, bucket), "ms", {"rangemode": "tozero"}))
    fig = make_subplots(rows=len(parts), cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=[title for title, _, _, _ in parts])
    for row, (_, part, y_title, axis) in enumerate(parts, start=1):
        for trace in part.data:
            fig.add_trace(trace, row=row, col=1)
        fig.update_yaxes(title_text=y_title, row=row, col=1, **axis)
    fig.update_layout(barmode="stack", bargap=0.1, height=260 * len(parts) - 20,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": 1.04, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
                      hovermode="x unified")
    return fig


def failures_figure(frame: pd.DataFrame, dim: str, title: str) -> go.Figure:
    """Failures per value of ``dim`` as horizontal bars, the largest on top. ``frame``: ``[dim, failures]``."""
    ordered = frame.sort_values("failures", ascending=True)
    fig = go.Figure(
        [
            go.Bar(
                x=ordered["failures"],
                y=ordered[dim].astype(str),
                orientation="h",
                marker_color=FAILURE_COLOR,
                hovertemplate="%{y}: %{x:,} failed<extra></extra>",
            )
        ]
    )
    fig = _layout(fig, title, y_title="", x_title="failed deliveries", height=max(220, 60 + 28 * len(frame)))
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(rangemode="normal")
    return fig


def status_figure(frame: pd.DataFrame) -> go.Figure:
    """Failures per HTTP response status (``0`` drawn as "no response"). ``frame`` as :func:`~dashboard.queries.failures_by_status`."""
    labels = frame["response_status"].map(lambda s: "no response" if int(s) == 0 else str(int(s)))
    relabelled = pd.DataFrame({"status": labels, "failures": frame["failures"]})
    fig = failures_figure(relabelled, "status", "Failures by response status")
    fig.update_yaxes(type="category")  # "404" is a name here, not a number
    return fig


def coverage_figure(intervals: Mapping[str, Sequence[Interval]], gaps: pd.DataFrame, since: datetime,
                    until: datetime, tz: tzinfo, label: Callable[[str], str] = str) -> go.Figure:
    """One row per webhook over ``[since, until)``: archived spans green, gaps red, the time since the last
    collection grey, and what MoeGo already deleted brown.

    ``intervals`` maps a webhook to its coverage (as :func:`~dashboard.coverage.coverage_intervals`);
    ``gaps`` is :func:`~dashboard.coverage.coverage_gaps` over the same span; ``label`` names each row's webhook.
    """
    rows: list[tuple[Any, Any, Any, str]] = []
    for webhook_id, spans in intervals.items():
        for span in spans:
            rows.append((webhook_id, span.start, span.end, "archived"))
    names = {"open": "gap", "expired": "deleted by MoeGo", "pending": "not collected yet"}
    for record in gaps.itertuples(index=False):
        rows.append((record.webhook_id, record.start, record.end, names[str(record.kind)]))
    colors = {"archived": SUCCESS_COLOR, "gap": FAILURE_COLOR, "deleted by MoeGo": "#5d4037",
              "not collected yet": "#9e9e9e"}
    fig = go.Figure()
    hooks = sorted({r[0] for r in rows} | set(intervals))
    for kind, color in colors.items():
        part = [r for r in rows if r[3] == kind]
        if not part:
            continue
        starts = [pd.Timestamp(r[1]).tz_convert(tz).tz_localize(None) for r in part]
        ends = [pd.Timestamp(r[2]).tz_convert(tz).tz_localize(None) for r in part]
        fig.add_trace(
            go.Bar(
                name=kind,
                y=[label(r[0]) for r in part],
                base=starts,
                x=[(e - s).total_seconds() * 1000 for s, e in zip(starts, ends)],
                orientation="h",
                marker_color=color,
                customdata=[[s.strftime("%Y-%m-%d %H:%M"), e.strftime("%Y-%m-%d %H:%M")] for s, e in zip(starts, ends)],
                hovertemplate="%{y}<br>%{customdata[0]} → %{customdata[1]}<extra>" + kind + "</extra>",
            )
        )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(type="date", range=[pd.Timestamp(since).tz_convert(tz).tz_localize(None),
                                         pd.Timestamp(until).tz_convert(tz).tz_localize(None)])
    fig.update_yaxes(categoryorder="array", categoryarray=[label(h) for h in hooks])
    fig = _layout(fig, "Archive coverage per webhook", y_title="", height=max(220, 90 + 40 * len(hooks)))
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(rangemode="normal")
    return fig


def attempts_figure(attempts: pd.DataFrame, current_id: str) -> go.Figure:
    """Every attempt at one event on a time line: green succeeded, red failed, the one shown ringed.

    ``attempts`` as :func:`~dashboard.queries.event_attempts` (``delivered_at`` already in the user's zone).
    """
    fig = go.Figure()
    for ok, name, color in ((True, "succeeded", SUCCESS_COLOR), (False, "failed", FAILURE_COLOR)):
        part = attempts[attempts["success"] == ok]
        if part.empty:
            continue
        fig.add_trace(
            go.Scatter(
                name=name,
                x=_wall(part["delivered_at"]),
                y=part["webhook_id"],
                mode="markers",
                marker={
                    "color": color,
                    "size": [16 if i == current_id else 10 for i in part["id"]],
                    "line": {"width": [3 if i == current_id else 0 for i in part["id"]], "color": "#212121"},
                },
                customdata=part[["id", "response_status", "duration_ms"]].to_numpy(),
                hovertemplate="%{customdata[0]}<br>HTTP %{customdata[1]} in %{customdata[2]} ms<extra>" + name + "</extra>",
            )
        )
    fig = _layout(fig, "Attempts at this event", y_title="", height=200 + 20 * attempts["webhook_id"].nunique())
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(rangemode="normal")
    return fig
