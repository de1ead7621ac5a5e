"""DataFrame -> chart, one function per chart: a plotly Figure, or for the Overview's trends a Vega-Lite spec
(:func:`trends_chart`). Pure: no Streamlit, no archive access.

Inputs are the frames :mod:`dashboard.queries` returns, with times already in the user's zone (or
a ``tz`` to convert to); they are drawn as that zone's wall-clock time. Colours mean the same on every chart: green
for success or coverage, red for failure or a gap.

Why the Overview's trends are Vega-Lite (``st.vega_lite_chart``) and not plotly: a browser opening the Overview
spent the largest part of its time on plotly.js (a 4.7 MB module to start, then the figure's layout), about 1.2-1.8 s of a
3-5 s load on this project's test machine; Streamlit's Vega-Lite chart draws the same three panels (one layered view since
issue-9m) in a few hundred milliseconds (``bench/README.md``, "The Overview in Chromium"). Pages opened less often (the coverage
timeline, an event's attempts) keep plotly.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from collectors.archive.coverage import Interval

__all__ = [
    "SUCCESS_COLOR",
    "FAILURE_COLOR",
    "trends_chart",
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


#: Vega-Lite's time unit of each bucket: bars a bucket wide, times read to the bucket's precision.
_TIME_UNIT = {"minute": "utcyearmonthdatehoursminutes", "hour": "utcyearmonthdatehours", "day": "utcyearmonthdate"}
_TIME_FORMAT = {"minute": "%Y-%m-%d %H:%M", "hour": "%Y-%m-%d %H:%M", "day": "%Y-%m-%d"}
_BAND_HEIGHT = 170  # pixels of one panel's plot
_BAND_GAP = 40  # pixels above each panel: its title
_FRAME = 70  # pixels of the chart around its plot: the legend above, the time axis below
_Y_AXIS = {"orient": "left", "minExtent": 56, "tickCount": 4}  # every panel's axis on the left, the same width
#: One colour legend for the two panels that need one: the outcome of a delivery and the latency percentile.
_COLOR = {"field": "series", "type": "nominal", "title": None,
          "legend": {"orient": "top", "direction": "horizontal"},
          "scale": {"domain": ["succeeded", "failed", "p50", "p95", "p99"],
                    "range": [SUCCESS_COLOR, FAILURE_COLOR, *_PERCENTILE_COLORS.values()]}}


def trends_chart(series: pd.DataFrame, bucket: str, *,
                 with_rate: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Volume, success rate and latency percentiles per bucket as ``(data, spec)``: ONE layered Vega-Lite view,
    drawn with ``st.vega_lite_chart(data, spec, width="stretch")``, whose panels are horizontal bands of one plot
    over one time axis (each panel's y scale drawn into its own band of pixels, with its own axis and a title
    above it). One view is less work for the browser than three charts (bench/README.md, part M).

    ``series`` as :func:`~dashboard.stats.time_series` (times aware, in the user's zone). ``data`` has one row per
    bucket: ``time`` (the bucket's start as wall-clock time of that zone, labelled UTC and read with UTC time
    units, so the axis shows the user's zone whatever the browser's own), ``deliveries``, ``succeeded``, ``failed``,
    ``success_rate`` (percent; missing for an empty bucket, which breaks the line), ``p50``, ``p95``, ``p99`` (ms).
    Panels, top down, each titled by a text mark above its band: deliveries stacked
    (succeeded under failed), success rate, latency percentiles. Pointing anywhere in a bucket's column shows
    every figure of that bucket in one tooltip; the wheel zooms the time axis, a drag pans it, a double click resets
    it. ``with_rate=False`` leaves out the success rate (a filter that fixes it, such as outcome = failed, makes it
    meaningless).
    """
    word = _BUCKET_WORD.get(bucket, bucket)
    data = pd.DataFrame({
        # The wall-clock time labelled UTC: Streamlit hands an aware time to Vega as it is (a naive one it would
        # shift by the browser's own offset), and the UTC time units below read the wall clock back unchanged.
        "time": _wall(series["time"]).dt.tz_localize("UTC"),
        "deliveries": series["successes"] + series["failures"],
        "succeeded": series["successes"],
        "failed": series["failures"],
        "success_rate": series["success_rate"] * 100.0,
        "p50": series["p50_ms"], "p95": series["p95_ms"], "p99": series["p99_ms"],
    })
    x = {"field": "time", "type": "temporal", "timeUnit": _TIME_UNIT.get(bucket, "utcyearmonthdatehoursminutes"),
         "title": None, "axis": {"labelOverlap": True}}
    tooltip = [{"field": "time", "type": "temporal", "timeUnit": x["timeUnit"], "title": word.capitalize(),
                "format": _TIME_FORMAT.get(bucket, "%Y-%m-%d %H:%M")},
               {"field": "deliveries", "type": "quantitative", "title": "Deliveries", "format": ","},
               {"field": "succeeded", "type": "quantitative", "title": "Succeeded", "format": ","},
               {"field": "failed", "type": "quantitative", "title": "Failed", "format": ","}]
    if with_rate:
        tooltip.append({"field": "success_rate", "type": "quantitative", "title": "Success rate (%)", "format": ".2f"})
    tooltip += [{"field": p, "type": "quantitative", "title": f"Latency {p} (ms)", "format": ",.0f"}
                for p in ("p50", "p95", "p99")]

    panels = [("volume", f"Deliveries per {word}")]
    if with_rate:
        panels.append(("rate", f"Success rate per {word}"))
    panels.append(("latency", f"Latency percentiles per {word}"))
    height = len(panels) * (_BAND_GAP + _BAND_HEIGHT)

    def at(pixels: int) -> dict[str, str]:
        # A height in the spec's pixels as a share of the plot's drawn height (Streamlit fits the whole chart,
        # legend and axis included, into ``height``: the plot itself gets what is left).
        return {"expr": f"height * {pixels / height:.6f}"}

    step = _BAND_GAP + _BAND_HEIGHT
    band = {name: [at(i * step + step), at(i * step + _BAND_GAP)]  # each panel's y range: [bottom, top]
            for i, (name, _) in enumerate(panels)}

    def y(field: str, title: str, name: str, **scale: Any) -> dict[str, Any]:
        return {"field": field, "type": "quantitative", "title": title, "axis": _Y_AXIS,
                "scale": {"range": band[name], **scale}}

    mid = {**x, "bandPosition": 0.5}  # lines through the middle of each bucket's bar
    layers: list[dict[str, Any]] = [{
        "transform": [{"fold": ["succeeded", "failed"], "as": ["series", "count"]}],
        "mark": {"type": "bar", "clip": True},  # clipped: zoomed in, nothing spills past the axes
        "params": [{"name": "zoom", "select": {"type": "interval", "encodings": ["x"]}, "bind": "scales"}],
        "encoding": {"x": x, "y": {**y("count", "deliveries", "volume"), "stack": "zero"}, "color": _COLOR,
                     "order": {"field": "series", "sort": "descending"}},
    }]
    if with_rate:
        layers.append({"mark": {"type": "line", "color": SUCCESS_COLOR, "point": {"color": SUCCESS_COLOR}, "clip": True},
                       "encoding": {"x": mid, "y": y("success_rate", "% succeeded", "rate", domain=[0, 100])}})
    layers.append({
        "transform": [{"fold": ["p50", "p95", "p99"], "as": ["series", "ms"]}],
        "mark": {"type": "line", "clip": True},
        "encoding": {"x": mid, "y": y("ms", "ms", "latency"), "color": _COLOR},
    })
    # Each panel's title, above its band (one text mark each, drawn from a one-row data set of its own).
    layers += [{"data": {"values": [{}]}, "mark": {"type": "text", "align": "left", "baseline": "bottom",
                                                       "fontWeight": "bold", "fontSize": 13, "text": title},
                "encoding": {"x": {"value": 0}, "y": {"value": {"expr": f"{band[name][1]['expr']} - 8"}}}}
               for name, title in panels]
    # One hover layer: a transparent column per bucket over every band; the one under the pointer shades and carries
    # the tooltip with every figure of that bucket (no `nearest`: no Voronoi diagram to compute).
    layers.append({
        "mark": {"type": "bar", "color": "#616161", "clip": True},
        "params": [{"name": "hover", "select": {"type": "point", "on": "pointerover", "clear": "pointerout"}}],
        "encoding": {"x": x, "y": {"value": band[panels[0][0]][1]}, "y2": {"value": {"expr": "height"}},
                     "tooltip": tooltip,
                     "opacity": {"condition": {"param": "hover", "empty": False, "value": 0.15}, "value": 0}},
    })
    spec = {"height": height + _FRAME, "layer": layers,
            "resolve": {"scale": {"y": "independent"}, "axis": {"y": "independent"}}}
    return data, spec


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
