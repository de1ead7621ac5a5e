"""Counts, success rates and latency percentiles over a window: exact counts, fast on a large archive.

:func:`aggregate` is the one primitive. For a window it reads the ``delivery_daily`` rollup for the whole
UTC days inside it (totals and breakdowns; a time series needs its hours), the ``delivery_hourly`` rollup for
the whole UTC hours around them and the raw ``deliveries`` rows only for the partial hours at its two
edges (at most two hours of rows), so totals are exact and cost the window's days plus at most 46 hours,
whatever the archive holds. An archive the collector has not brought to schema 15 yet reads the same
numbers from the hours.
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
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Literal, Sequence

import pandas as pd

from collectors.archive import HISTOGRAM_COLUMNS, LATENCY_BUCKET_BOUNDS_MS, histogram_sql
from collectors.models import format_timestamp

from collectors.archive.filters import Bucket, Filters, Window
from collectors.archive.rollups import has_daily
from collectors.archive.where import Clause, daily_where, deliveries_where, hourly_where, rollup_can_answer

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
    "hours_and_days",
]

#: Dimensions both ``deliveries`` and ``delivery_hourly`` can group by.
DIMENSIONS: tuple[str, ...] = ("webhook_id", "event_type", "success", "status_class", "error_class")
#: The measures :func:`aggregate` returns for every group.
AGG_COLUMNS: tuple[str, ...] = ("deliveries", "successes", "retries", "duration_sum", "duration_max", *HISTOGRAM_COLUMNS)

Grain = Literal["minute", "hour", "day"]
_GRAIN_CHARS = {"minute": 16, "hour": 13, "day": 10}


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
    bucket = "substr(hour, 1, 10)" if grain == "day" else "hour"
    return _grouped(conn, "delivery_hourly", bucket, _ROLLUP_MEASURES, hourly_where(filters, hour_from, hour_to),
                    grain, dims)


def _daily(conn: sqlite3.Connection, filters: Filters, day_from: str, day_to: str, grain: Grain | None,
           dims: tuple[str, ...]) -> pd.DataFrame:
    return _grouped(conn, "delivery_daily", "day", _ROLLUP_MEASURES, daily_where(filters, day_from, day_to), grain, dims)


def _frame(conn: sqlite3.Connection, sql: str, params: Sequence[object], group: list[str]) -> pd.DataFrame:
    return _records(conn.execute(sql, tuple(params)).fetchall(), group)


def _records(rows: list[tuple], group: list[str]) -> pd.DataFrame:
    """Rows of ``group`` keys then :data:`AGG_COLUMNS` as a frame of the groups with deliveries."""
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


def hours_and_days(hour_from: str, hour_to: str) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """Whole hours ``[hour_from, hour_to)`` (``YYYY-MM-DDTHH``; none when empty) as the whole UTC days inside them
    (``(day_from, day_to)``, or ``None``) and the hour ranges before and after those days."""
    if not hour_from or hour_from >= hour_to:
        return [], None
    first = date.fromisoformat(hour_from[:10])
    day_from = (first if hour_from.endswith("T00") else first + timedelta(days=1)).isoformat()
    day_to = hour_to[:10]
    if day_from >= day_to:
        return [(hour_from, hour_to)], None
    hours = [(lo, hi) for lo, hi in ((hour_from, day_from + "T00"), (day_to + "T00", hour_to)) if lo < hi]
    return hours, (day_from, day_to)


def aggregate(conn: sqlite3.Connection, filters: Filters, window: Window, *, grain: Grain | None = None,
              dims: Sequence[str] = ()) -> pd.DataFrame:
    """Counts and latency histogram of the deliveries ``filters`` select in ``window``, grouped.

    Columns: ``bucket`` (when ``grain`` is given: the UTC ``YYYY-MM-DD``, ``YYYY-MM-DDTHH`` or
    ``YYYY-MM-DDTHH:MM`` prefix of ``delivered_at``), then ``dims`` (a subset of :data:`DIMENSIONS`), then
    :data:`AGG_COLUMNS`. Only groups with at least one delivery appear. Exact: whole days (without a
    ``grain`` or by day) come from the daily rollup, whole hours from the hourly one, partial edge hours and minute
    buckets from the raw rows.
    """
    dims = _check_dims(dims)
    since, until = window.since.astimezone(timezone.utc), window.until.astimezone(timezone.utc)
    group = (["bucket"] if grain else []) + list(dims)
    if grain == "minute" or not rollup_can_answer(filters):
        return _raw(conn, filters, window.since_text, window.until_text, grain, dims).reset_index(drop=True)
    inner_from, inner_to = _ceil_hour(since), _floor_hour(until)
    if inner_from >= inner_to:
        return _raw(conn, filters, window.since_text, window.until_text, grain, dims).reset_index(drop=True)
    hour_from, hour_to = inner_from.strftime("%Y-%m-%dT%H"), inner_to.strftime("%Y-%m-%dT%H")
    if grain in (None, "day") and has_daily(conn):
        hours, days = hours_and_days(hour_from, hour_to)
        parts = [_rollup(conn, filters, lo, hi, grain, dims) for lo, hi in hours]
        if days:
            parts.append(_daily(conn, filters, *days, grain, dims))
    else:
        parts = [_rollup(conn, filters, hour_from, hour_to, grain, dims)]
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
    suffix = {"minute": ":00Z", "hour": ":00:00Z", "day": "T00:00:00Z"}[grain]
    return pd.to_datetime(keys + suffix, utc=True, format="ISO8601")


#: Compound SELECTs per statement (SQLite's own limit is 500).
_PARTS_PER_STATEMENT = 200


def _cut_hours(conn: sqlite3.Connection, filters: Filters, window: Window, starts: pd.DatetimeIndex,
               frame: pd.DataFrame) -> tuple[pd.DataFrame, Grain]:
    """``frame`` (hour buckets of ``window``) with every UTC hour a day of ``starts`` begins inside (a zone whose
    offset is not whole hours: India, Newfoundland, South Australia, Nepal...) replaced by its two parts, before
    and from that moment, counted from the raw rows, so each delivery falls on its own calendar day; then
    ``(frame, "minute")``, each bucket keyed by the minute it starts at. ``(frame, "hour")`` unchanged when no
    day starts inside an hour. One statement per 100 such hours (two parts each)."""
    since, until = window.since.astimezone(timezone.utc), window.until.astimezone(timezone.utc)
    cuts = sorted({moment for moment in (start.to_pydatetime().astimezone(timezone.utc) for start in starts)
                   if (moment.minute or moment.second) and since <= moment < until})
    if not cuts:
        return frame, "hour"
    spans = []
    for cut in cuts:
        hour = _floor_hour(cut)
        spans.extend((lo, hi) for lo, hi in ((max(hour, since), cut), (cut, min(hour + timedelta(hours=1), until)))
                     if lo < hi)
    rows: list[tuple] = []
    for first in range(0, len(spans), _PARTS_PER_STATEMENT):
        selects, params = [], []
        for lo, hi in spans[first : first + _PARTS_PER_STATEMENT]:
            where = deliveries_where(filters, format_timestamp(lo), format_timestamp(hi))
            selects.append(f"SELECT ? AS bucket, {_RAW_MEASURES} FROM deliveries WHERE {where.sql}")
            params.extend((lo.strftime("%Y-%m-%dT%H:%M"), *where.params))
        rows.extend(conn.execute(" UNION ALL ".join(selects), params).fetchall())
    keys = {cut.strftime("%Y-%m-%dT%H") for cut in cuts}
    parts = [frame[~frame["bucket"].isin(keys)].assign(bucket=lambda f: f["bucket"] + ":00")] if not frame.empty else []
    parts.append(_records(rows, ["bucket"]))
    parts = [part for part in parts if not part.empty]
    if not parts:
        return frame.iloc[0:0], "minute"
    return pd.concat(parts, ignore_index=True), "minute"


def time_series(conn: sqlite3.Connection, filters: Filters, window: Window, bucket: Bucket, tz: tzinfo) -> pd.DataFrame:
    """One row per bucket of ``window`` (empty buckets included, as zeros), oldest first.

    Columns: ``time`` (bucket start, aware in ``tz``), ``deliveries``, ``successes``, ``failures``,
    ``retries``, ``success_rate`` (0..1, NaN when empty), ``p50_ms``, ``p95_ms``, ``p99_ms`` (NaN
    when empty). Hour and day buckets read the rollups (plus the edge hours' raw rows: days from the daily rollup
    where the zone's days are UTC days, else from their hours, and in a zone whose days begin inside a UTC hour,
    that hour's minutes from the raw rows); minute buckets read ``deliveries``.
    """
    starts = bucket_starts(window, bucket, tz)
    # A day of a zone at UTC+0 over the window (UTC; London in winter) is a UTC day: the daily rollup answers it.
    utc_days = bucket == "day" and all(start.utcoffset() == timedelta(0) for start in starts)
    grain: Grain = "minute" if bucket == "minute" else "day" if utc_days else "hour"
    frame = aggregate(conn, filters, window, grain=grain)
    if bucket == "day" and grain == "hour":
        frame, grain = _cut_hours(conn, filters, window, starts, frame)
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
