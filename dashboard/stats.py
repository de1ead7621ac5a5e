"""Counts, success rates and latency percentiles over a window: exact counts, fast on a large archive.

:func:`aggregate` is the one primitive. For a window it reads the ``delivery_hourly`` rollup for the
whole UTC hours inside it and the raw ``deliveries`` rows only for the partial hours at its two
edges (at most two hours of rows), so totals are exact and cost the same for a day or a month.
Minute buckets, and filters the rollup cannot answer (a text search), read ``deliveries`` alone,
always bounded by the ``delivered_at`` range.

Latency percentiles come from the rollup's histogram (:data:`collectors.archive.HISTOGRAM_COLUMNS`),
estimated by linear interpolation inside the bucket holding the wanted rank
(:func:`percentile_from_histogram`): the estimate always lies in the same bucket as the exact value.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Literal, Sequence

import pandas as pd

from collectors.archive import HISTOGRAM_COLUMNS, LATENCY_BUCKET_BOUNDS_MS, histogram_sql
from collectors.models import format_timestamp

from collectors.archive.filters import Bucket, Filters, Window
from collectors.archive.where import Clause, deliveries_where, hourly_where, rollup_can_answer

__all__ = [
    "DIMENSIONS",
    "AGG_COLUMNS",
    "Summary",
    "percentile_from_histogram",
    "aggregate",
    "summary",
    "summarize",
    "time_series",
    "bucket_starts",
    "RollupSplit",
    "rollup_split",
]

#: Dimensions both ``deliveries`` and ``delivery_hourly`` can group by.
DIMENSIONS: tuple[str, ...] = ("webhook_id", "event_type", "success", "status_class", "error_class")
#: The measures :func:`aggregate` returns for every group.
AGG_COLUMNS: tuple[str, ...] = ("deliveries", "successes", "retries", "duration_sum", "duration_max", *HISTOGRAM_COLUMNS)

Grain = Literal["minute", "hour"]
_GRAIN_CHARS = {"minute": 16, "hour": 13}


def percentile_from_histogram(counts: Sequence[float], q: float, *, max_ms: float | None = None) -> float | None:
    """The ``q``-quantile (0..1) of durations counted in the latency histogram, in ms; ``None`` when empty.

    Bucket ``i`` holds durations in ``(bound[i-1], bound[i]]`` (the first from 0, the last unbounded).
    The wanted rank ``q * total`` falls in one bucket; the value is interpolated linearly between
    that bucket's bounds. ``max_ms``, the largest duration counted, caps the upper bound of the
    bucket holding it and gives the open last bucket an upper bound (without it, the last bucket
    is reported at its lower bound).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    if len(counts) != len(HISTOGRAM_COLUMNS):
        raise ValueError(f"expected {len(HISTOGRAM_COLUMNS)} histogram counts, got {len(counts)}")
    total = float(sum(counts))
    if total <= 0:
        return None
    target = q * total
    cumulative = 0.0
    bounds = LATENCY_BUCKET_BOUNDS_MS
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        lower = 0.0 if i == 0 else float(bounds[i - 1])
        upper = float(bounds[i]) if i < len(bounds) else (max(float(max_ms), lower) if max_ms is not None else lower)
        if max_ms is not None and lower <= max_ms < upper:
            upper = float(max_ms)
        if cumulative + count >= target:
            fraction = (target - cumulative) / count
            return lower + max(0.0, min(1.0, fraction)) * (upper - lower)
        cumulative += count
    return None  # pragma: no cover - the loop always reaches the total


def _measures_raw() -> str:
    parts = [
        "COUNT(*) AS deliveries",
        "SUM(success) AS successes",
        "SUM(retry_count) AS retries",
        "SUM(duration_ms) AS duration_sum",
        "MAX(duration_ms) AS duration_max",
    ]
    return ", ".join([*parts, histogram_sql()])


def _measures_rollup() -> str:
    parts = [
        "SUM(deliveries) AS deliveries",
        "SUM(CASE WHEN success = 1 THEN deliveries ELSE 0 END) AS successes",
        "SUM(retries) AS retries",
        "SUM(duration_sum) AS duration_sum",
        "MAX(duration_max) AS duration_max",
    ]
    parts.extend(f"SUM({c}) AS {c}" for c in HISTOGRAM_COLUMNS)
    return ", ".join(parts)


_RAW_MEASURES = _measures_raw()
_ROLLUP_MEASURES = _measures_rollup()


def _check_dims(dims: Sequence[str]) -> tuple[str, ...]:
    for dim in dims:
        if dim not in DIMENSIONS:
            raise ValueError(f"cannot group by {dim!r}; use one of {', '.join(DIMENSIONS)}")
    return tuple(dims)


def _grouped(conn: sqlite3.Connection, table: str, bucket: str, measures: str, where: Clause,
             grain: Grain | None, dims: tuple[str, ...]) -> pd.DataFrame:
    """``measures`` of ``table`` rows matching ``where``, grouped by ``bucket`` (when ``grain``) and ``dims``."""
    keys = ([f"{bucket} AS bucket"] if grain else []) + list(dims)
    group = (["bucket"] if grain else []) + list(dims)
    sql = f"SELECT {', '.join([*keys, measures])} FROM {table} WHERE {where.sql}"
    if group:
        sql += f" GROUP BY {', '.join(group)}"
    return _frame(conn, sql, where.params, group)


def _raw(conn: sqlite3.Connection, filters: Filters, since: str, until: str, grain: Grain | None,
         dims: tuple[str, ...]) -> pd.DataFrame:
    bucket = f"substr(delivered_at, 1, {_GRAIN_CHARS[grain]})" if grain else ""
    return _grouped(conn, "deliveries", bucket, _RAW_MEASURES, deliveries_where(filters, since, until), grain, dims)


def _rollup(conn: sqlite3.Connection, filters: Filters, hour_from: str, hour_to: str, grain: Grain | None,
            dims: tuple[str, ...]) -> pd.DataFrame:
    return _grouped(conn, "delivery_hourly", "hour", _ROLLUP_MEASURES, hourly_where(filters, hour_from, hour_to),
                    grain, dims)


def _frame(conn: sqlite3.Connection, sql: str, params: Sequence[object], group: list[str]) -> pd.DataFrame:
    rows = conn.execute(sql, tuple(params)).fetchall()
    frame = pd.DataFrame.from_records(rows, columns=[*group, *AGG_COLUMNS])
    if frame.empty:
        return frame
    frame[list(AGG_COLUMNS)] = frame[list(AGG_COLUMNS)].fillna(0).astype("int64")
    return frame[frame["deliveries"] > 0]


def _ceil_hour(moment: datetime) -> datetime:
    floored = moment.replace(minute=0, second=0, microsecond=0)
    return floored if floored == moment else floored + timedelta(hours=1)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RollupSplit:
    """A window as the rollups read it: whole UTC hours ``[hour_from, hour_to)`` (``YYYY-MM-DDTHH``; empty
    when ``hour_from == hour_to``) and the raw ``[since, until)`` ragged edges around them (archive text)."""

    hour_from: str
    hour_to: str
    edges: tuple[tuple[str, str], ...]


def rollup_split(window: Window) -> RollupSplit:
    """The whole hours inside ``window`` and its at most two partial-hour edges."""
    since, until = window.since.astimezone(timezone.utc), window.until.astimezone(timezone.utc)
    inner_from, inner_to = _ceil_hour(since), _floor_hour(until)
    if inner_from >= inner_to:
        return RollupSplit("", "", ((window.since_text, window.until_text),))
    edges = []
    if since < inner_from:
        edges.append((format_timestamp(since), format_timestamp(inner_from)))
    if inner_to < until:
        edges.append((format_timestamp(inner_to), format_timestamp(until)))
    return RollupSplit(inner_from.strftime("%Y-%m-%dT%H"), inner_to.strftime("%Y-%m-%dT%H"), tuple(edges))


def aggregate(conn: sqlite3.Connection, filters: Filters, window: Window, *, grain: Grain | None = None,
              dims: Sequence[str] = ()) -> pd.DataFrame:
    """Counts and latency histogram of the deliveries ``filters`` select in ``window``, grouped.

    Columns: ``bucket`` (when ``grain`` is given: the UTC ``YYYY-MM-DDTHH`` or ``YYYY-MM-DDTHH:MM``
    prefix of ``delivered_at``), then ``dims`` (a subset of :data:`DIMENSIONS`), then
    :data:`AGG_COLUMNS`. Only groups with at least one delivery appear. Exact: whole hours come from
    the rollup, partial edge hours and minute buckets from the raw rows.
    """
    dims = _check_dims(dims)
    since, until = window.since.astimezone(timezone.utc), window.until.astimezone(timezone.utc)
    group = (["bucket"] if grain else []) + list(dims)
    if grain == "minute" or not rollup_can_answer(filters):
        return _raw(conn, filters, window.since_text, window.until_text, grain, dims).reset_index(drop=True)
    inner_from, inner_to = _ceil_hour(since), _floor_hour(until)
    if inner_from >= inner_to:
        return _raw(conn, filters, window.since_text, window.until_text, grain, dims).reset_index(drop=True)
    parts = [_rollup(conn, filters, inner_from.strftime("%Y-%m-%dT%H"), inner_to.strftime("%Y-%m-%dT%H"), grain, dims)]
    if since < inner_from:
        parts.append(_raw(conn, filters, format_timestamp(since), format_timestamp(inner_from), grain, dims))
    if inner_to < until:
        parts.append(_raw(conn, filters, format_timestamp(inner_to), format_timestamp(until), grain, dims))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=[*group, *AGG_COLUMNS])
    combined = pd.concat(parts, ignore_index=True)
    if len(parts) == 1:
        return combined
    if not group:
        sums = combined[list(AGG_COLUMNS)].sum()
        sums["duration_max"] = combined["duration_max"].max()
        return pd.DataFrame([sums.astype("int64")])
    how = {c: "sum" for c in AGG_COLUMNS}
    how["duration_max"] = "max"
    return combined.groupby(group, as_index=False, sort=True).agg(how)


@dataclass(frozen=True)
class Summary:
    """The headline numbers of a set of deliveries."""

    deliveries: int = 0
    successes: int = 0
    retries: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    @property
    def failures(self) -> int:
        """Deliveries that did not succeed (no 2xx answer)."""
        return self.deliveries - self.successes

    @property
    def success_rate(self) -> float | None:
        """Successes / deliveries (0..1), ``None`` without deliveries."""
        return self.successes / self.deliveries if self.deliveries else None


def _histogram(frame: pd.DataFrame) -> list[int]:
    return [int(frame[c].sum()) for c in HISTOGRAM_COLUMNS]


def summarize(frame: pd.DataFrame) -> Summary:
    """The :class:`Summary` of every row of an :func:`aggregate` result taken together."""
    if frame.empty:
        return Summary()
    counts = _histogram(frame)
    max_ms = float(frame["duration_max"].max())
    return Summary(
        deliveries=int(frame["deliveries"].sum()),
        successes=int(frame["successes"].sum()),
        retries=int(frame["retries"].sum()),
        p50_ms=percentile_from_histogram(counts, 0.50, max_ms=max_ms),
        p95_ms=percentile_from_histogram(counts, 0.95, max_ms=max_ms),
        p99_ms=percentile_from_histogram(counts, 0.99, max_ms=max_ms),
    )


def summary(conn: sqlite3.Connection, filters: Filters, window: Window) -> Summary:
    """The headline numbers of the deliveries ``filters`` select in ``window``."""
    return summarize(aggregate(conn, filters, window))


def bucket_starts(window: Window, bucket: Bucket, tz: tzinfo) -> pd.DatetimeIndex:
    """Every bucket start from the one holding ``window.since`` up to ``window.until`` (exclusive), in ``tz``.

    Minute and hour buckets are UTC-aligned; day buckets are the calendar days of ``tz``.
    """
    since = pd.Timestamp(window.since).tz_convert("UTC")
    until = pd.Timestamp(window.until).tz_convert("UTC")
    if bucket == "day":
        first = since.tz_convert(tz).date()
        last = (until - pd.Timedelta(microseconds=1)).tz_convert(tz).date()
        days = pd.date_range(first, last, freq="D")
        return pd.DatetimeIndex(days.tz_localize(tz, ambiguous=False, nonexistent="shift_forward"))
    freq = "min" if bucket == "minute" else "h"
    starts = pd.date_range(since.floor(freq), until, freq=freq, inclusive="left")
    return pd.DatetimeIndex(starts.tz_convert(tz))


def _bucket_time(keys: pd.Series, grain: Grain) -> pd.Series:
    suffix = ":00Z" if grain == "minute" else ":00:00Z"
    return pd.to_datetime(keys + suffix, utc=True, format="ISO8601")


def time_series(conn: sqlite3.Connection, filters: Filters, window: Window, bucket: Bucket, tz: tzinfo) -> pd.DataFrame:
    """One row per bucket of ``window`` (empty buckets included, as zeros), oldest first.

    Columns: ``time`` (bucket start, aware in ``tz``), ``deliveries``, ``successes``, ``failures``,
    ``retries``, ``success_rate`` (0..1, NaN when empty), ``p50_ms``, ``p95_ms``, ``p99_ms`` (NaN
    when empty). Hour and day buckets read the rollup (plus the edge hours' raw rows); minute
    buckets read ``deliveries``.
    """
    grain: Grain = "minute" if bucket == "minute" else "hour"
    frame = aggregate(conn, filters, window, grain=grain)
    starts = bucket_starts(window, bucket, tz)
    columns = ["time", "deliveries", "successes", "failures", "retries", "success_rate", "p50_ms", "p95_ms", "p99_ms"]
    if frame.empty:
        out = pd.DataFrame({"time": starts})
        for c in ("deliveries", "successes", "failures", "retries"):
            out[c] = 0
        for c in ("success_rate", "p50_ms", "p95_ms", "p99_ms"):
            out[c] = math.nan
        return out[columns]
    frame = frame.copy()
    frame["time"] = _bucket_time(frame["bucket"], grain).dt.tz_convert(tz)
    if bucket == "day":
        local_days = pd.to_datetime(frame["time"].dt.date)
        frame["time"] = local_days.dt.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    how = {c: "sum" for c in AGG_COLUMNS}
    how["duration_max"] = "max"
    grouped = frame.groupby("time", sort=True).agg(how)
    grouped = grouped.reindex(starts, fill_value=0)
    grouped.index.name = "time"
    out = grouped.reset_index()
    out["failures"] = out["deliveries"] - out["successes"]
    out["success_rate"] = (out["successes"] / out["deliveries"]).where(out["deliveries"] > 0)
    histograms = out[list(HISTOGRAM_COLUMNS)].to_numpy()
    maxima = out["duration_max"].to_numpy()
    for name, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        values = [percentile_from_histogram(list(h), q, max_ms=float(m)) for h, m in zip(histograms, maxima)]
        out[name] = pd.Series([math.nan if v is None else v for v in values], dtype="float64")
    return out[columns]
