"""The built-in rules: each reads the hourly rollup, recent rows by index, or the status read model.

No rule reads the whole archive, so evaluating them costs the same on one month or one year of
history (``bench/alerts.py`` measures it):

- ``success_rate``: share of successful deliveries over ``window`` (rollup for whole hours, raw rows
  for the partial hours at its ends), below ``threshold`` with at least ``min_deliveries``;
- ``consecutive_failures``: the latest ``count`` deliveries of a webhook all failed (index seeks; the
  incident covers the whole failing streak, from the first failure after the last success);
- ``latency_p95``: the 95th percentile of ``window``'s latency histogram above ``threshold_ms``;
- ``silence``: no delivery for ``span`` (up to the webhook's last sync) although the last 7 days'
  rollup says about ``min_expected`` or more were due in such a span;
- ``webhook_inactive``: MoeGo reports the webhook inactive, or no longer has it;
- ``unrecovered_failures``: at least ``min_events`` events whose every attempt failed will be
  deleted by MoeGo's retention within ``before`` (failed rows at the retention edge only);
- ``collector_stale``: no webhook synced successfully for ``span`` (archive-wide);
- ``at_risk``: parts of the window about to expire unarchived (the ``status`` read model).

:func:`evaluate_rules` returns what fires now, as :class:`Finding` s, and which kinds it could
evaluate (an incident of a kind that could not be evaluated is left as it is).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable
from urllib.parse import urlparse

from ..archive import HISTOGRAM_COLUMNS, LATENCY_BUCKET_BOUNDS_MS, histogram_sql
from ..archive.coverage import RETENTION, retention_start
from ..archive.when import BEFORE_ALL, key_of
from ..models import format_timestamp, parse_timestamp
from . import status as status_model
from .config import RULE_KINDS, AlertsConfig, RuleConfig

__all__ = ["Finding", "Evaluation", "WebhookInfo", "endpoint_label", "evaluate_rules", "window_counts", "p95_ms", "span_words"]


@dataclass(frozen=True)
class Finding:
    """A rule that fires for a webhook ('' for the whole archive) now, in one line."""

    rule: str
    webhook_id: str
    summary: str
    failures_since: datetime | None = None


@dataclass
class Evaluation:
    """Every finding of one evaluation, the kinds evaluated, and one line per kind that could not be."""

    findings: list[Finding] = field(default_factory=list)
    evaluated: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WebhookInfo:
    """A webhook as the archive knows it."""

    id: str
    endpoint_url: str
    is_active: bool
    deleted_at: str | None

    @property
    def endpoint(self) -> str:
        """Its endpoint as host+path (see :func:`endpoint_label`)."""
        return endpoint_label(self.endpoint_url)


def endpoint_label(endpoint_url: str) -> str:
    """A webhook's endpoint as ``host[:port]/path``: no scheme, credentials, query or fragment (they may hold secrets)."""
    try:
        parsed = urlparse(endpoint_url)
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
    except ValueError:
        return "(unreadable endpoint)"
    text = f"{host}{port}{parsed.path}".rstrip("/")
    if not text:
        return "(unknown endpoint)"
    return text if len(text) <= 120 else text[:60] + "…" + text[-59:]


def _webhooks(conn: sqlite3.Connection) -> list[WebhookInfo]:
    return [WebhookInfo(r[0], r[1], bool(r[2]), r[3])
            for r in conn.execute("SELECT id, endpoint_url, is_active, deleted_at FROM webhooks ORDER BY id")]


# -- windows over the rollup ------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Deliveries of a window: how many, how many failed, the latency histogram (``HISTOGRAM_COLUMNS``)."""

    total: int
    failed: int
    histogram: tuple[int, ...]


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


_RAW = (f"SELECT COUNT(*), SUM(success = 0), {histogram_sql()} FROM deliveries "
        "WHERE webhook_id = ? AND delivered_key >= ? AND delivered_key < ?")
_ROLLUP = (f"SELECT SUM(deliveries), SUM(CASE WHEN success = 0 THEN deliveries ELSE 0 END), "
           f"{', '.join(f'SUM({c})' for c in HISTOGRAM_COLUMNS)} FROM delivery_hourly "
           f"WHERE hour >= ? AND hour < ? AND webhook_id = ?")


def window_counts(conn: sqlite3.Connection, webhook_id: str, since: datetime, until: datetime) -> Counts:
    """A webhook's deliveries in ``[since, until)``: whole hours from ``delivery_hourly``, the ends from raw rows."""
    first = _hour_floor(since)
    if first < since:
        first += timedelta(hours=1)
    last = _hour_floor(until)
    parts: list[tuple] = []
    if first < last:
        parts.append(conn.execute(_ROLLUP, (format_timestamp(first)[:13], format_timestamp(last)[:13], webhook_id)).fetchone())
        spans = [(since, first), (last, until)]
    else:
        spans = [(since, until)]
    for start, end in spans:
        if start < end:
            parts.append(conn.execute(_RAW, (webhook_id, key_of(format_timestamp(start)),
                                             key_of(format_timestamp(end)))).fetchone())
    total = sum(p[0] or 0 for p in parts)
    failed = sum(p[1] or 0 for p in parts)
    histogram = tuple(sum(p[2 + i] or 0 for p in parts) for i in range(len(HISTOGRAM_COLUMNS)))
    return Counts(total, failed, histogram)


def p95_ms(histogram: Iterable[int]) -> int | None:
    """The upper bound (ms) of the bucket holding the 95th percentile; the last bucket counts as its lower bound + 1."""
    counts = list(histogram)
    total = sum(counts)
    if not total:
        return None
    running = 0
    for i, count in enumerate(counts):
        running += count
        if running >= 0.95 * total:
            return LATENCY_BUCKET_BOUNDS_MS[i] if i < len(LATENCY_BUCKET_BOUNDS_MS) else LATENCY_BUCKET_BOUNDS_MS[-1] + 1
    return None


def span_words(delta: timedelta) -> str:
    """A time span as incidents say it: ``45 s``, ``44 min``, ``5 h``, ``3 d`` (whole units, rounded down)."""
    seconds = int(delta.total_seconds())
    if seconds >= 172800:
        return f"{seconds // 86400} d"
    if seconds >= 7200:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# -- the rules --------------------------------------------------------------------------------------

RuleFn = Callable[[sqlite3.Connection, WebhookInfo, RuleConfig, datetime], "Finding | None"]


def _success_rate(conn: sqlite3.Connection, hook: WebhookInfo, rule: RuleConfig, now: datetime) -> Finding | None:
    window: timedelta = rule.params["window"]
    counts = window_counts(conn, hook.id, now - window, now)
    if counts.total < rule.params["min_deliveries"] or not counts.total:
        return None
    rate = (counts.total - counts.failed) / counts.total
    if rate >= rule.params["threshold"]:
        return None
    return Finding("success_rate", hook.id,
                   f"{rate:.1%} of {counts.total:,} deliveries succeeded in the last {span_words(window)} "
                   f"(threshold {rule.params['threshold']:.1%}): {counts.failed:,} failed",
                   failures_since=now - window)


def _consecutive_failures(conn: sqlite3.Connection, hook: WebhookInfo, rule: RuleConfig, now: datetime) -> Finding | None:
    count = rule.params["count"]
    latest = conn.execute(
        "SELECT success, delivered_at FROM deliveries WHERE webhook_id = ? ORDER BY delivered_key DESC LIMIT ?",
        (hook.id, count),
    ).fetchall()
    if len(latest) < count or any(success for success, _ in latest):
        return None
    # The streak started with the first failure after the last success (two seeks on the outcome index).
    last_success = conn.execute("SELECT MAX(delivered_key) FROM deliveries WHERE webhook_id = ? AND success = 1",
                                (hook.id,)).fetchone()[0]
    first_failure = conn.execute(
        "SELECT delivered_at FROM deliveries WHERE webhook_id = ? AND success = 0 AND delivered_key > ? "
        "ORDER BY delivered_key LIMIT 1", (hook.id, BEFORE_ALL if last_success is None else last_success)).fetchone()
    first_failure = first_failure[0] if first_failure else None
    since = parse_timestamp(first_failure or latest[-1][1])
    return Finding("consecutive_failures", hook.id,
                   f"the latest {count} deliveries all failed (failing since {since:%Y-%m-%d %H:%M} UTC)",
                   failures_since=since)


def _latency_p95(conn: sqlite3.Connection, hook: WebhookInfo, rule: RuleConfig, now: datetime) -> Finding | None:
    window: timedelta = rule.params["window"]
    counts = window_counts(conn, hook.id, now - window, now)
    if counts.total < rule.params["min_deliveries"]:
        return None
    p95 = p95_ms(counts.histogram)
    if p95 is None or p95 <= rule.params["threshold_ms"]:
        return None
    shown = f"over {LATENCY_BUCKET_BOUNDS_MS[-1]:,} ms" if p95 > LATENCY_BUCKET_BOUNDS_MS[-1] else f"up to {p95:,} ms"
    return Finding("latency_p95", hook.id,
                   f"95th percentile latency {shown} over the last {span_words(window)} "
                   f"(threshold {rule.params['threshold_ms']:,} ms, {counts.total:,} deliveries)")


def _silence(conn: sqlite3.Connection, hook: WebhookInfo, rule: RuleConfig, now: datetime) -> Finding | None:
    if not hook.is_active:
        return None
    synced = conn.execute("SELECT last_success_at FROM sync_state WHERE webhook_id = ?", (hook.id,)).fetchone()
    newest = conn.execute("SELECT delivered_at FROM deliveries WHERE webhook_id = ? ORDER BY delivered_key DESC LIMIT 1",
                          (hook.id,)).fetchone()
    newest = newest[0] if newest else None
    if not synced or not synced[0] or not newest:
        return None
    reference = parse_timestamp(synced[0])
    quiet = reference - parse_timestamp(newest)
    span: timedelta = rule.params["span"]
    if quiet < span:
        return None
    baseline = timedelta(days=7)
    week = conn.execute(
        "SELECT SUM(deliveries) FROM delivery_hourly WHERE hour >= ? AND hour < ? AND webhook_id = ?",
        (format_timestamp(reference - baseline)[:13], format_timestamp(reference)[:13], hook.id),
    ).fetchone()[0] or 0
    expected = week * (span / baseline)
    if expected < rule.params["min_expected"]:
        return None
    return Finding("silence", hook.id,
                   f"no delivery for {span_words(quiet)} (last {newest[:16].replace('T', ' ')} UTC); "
                   f"about {expected:,.0f} are usual in {span_words(span)}")


def _webhook_inactive(conn: sqlite3.Connection, hook: WebhookInfo, rule: RuleConfig, now: datetime) -> Finding | None:
    if hook.deleted_at:
        return Finding("webhook_inactive", hook.id, f"MoeGo no longer has this webhook (gone since {hook.deleted_at[:16].replace('T', ' ')} UTC); "
                       "its archive is kept")
    if not hook.is_active:
        return Finding("webhook_inactive", hook.id, "the webhook is inactive at MoeGo: nothing is delivered to it")
    return None


#: The failed rows at the retention edge whose event never succeeded on the same webhook, one row per event.
#: The ``+`` on the inner ``webhook_id`` and ``success`` keeps SQLite (which has no statistics here) on the event
#: index: an event has a handful of attempts, while the webhook-and-outcome index would scan every successful
#: delivery of the webhook for each failed row (at MoeGo's full volume, 100 s a pass instead of milliseconds).
UNRECOVERED_SQL = """SELECT d.webhook_id, d.event_id, MIN(d.delivered_at) FROM deliveries d
   WHERE d.success = 0 AND d.delivered_key >= ? AND d.delivered_key < ?
     AND NOT EXISTS (SELECT 1 FROM deliveries s WHERE s.event_id = d.event_id
                     AND +s.webhook_id = d.webhook_id AND +s.success = 1)
   GROUP BY d.webhook_id, d.event_id"""


def _unrecovered(conn: sqlite3.Connection, hooks: list[WebhookInfo], config: AlertsConfig, now: datetime) -> list[Finding]:
    """One query over the failed rows at the retention edge (the partial index on failures), grouped by webhook."""
    rules = {h.id: config.rule_for("unrecovered_failures", h.id) for h in hooks if not h.deleted_at}
    rules = {k: v for k, v in rules.items() if v is not None}
    if not rules:
        return []
    edge = retention_start(now)
    widest = max(r.params["before"] for r in rules.values())
    rows = conn.execute(UNRECOVERED_SQL, (key_of(format_timestamp(edge)), key_of(format_timestamp(edge + widest)))).fetchall()
    per_hook: dict[str, list[str]] = {}
    for webhook_id, _event, first in rows:
        rule = rules.get(webhook_id)
        if rule is not None and first < format_timestamp(edge + rule.params["before"]):
            per_hook.setdefault(webhook_id, []).append(first)
    out = []
    for webhook_id, firsts in sorted(per_hook.items()):
        rule = rules[webhook_id]
        if len(firsts) < rule.params["min_events"]:
            continue
        oldest = parse_timestamp(min(firsts))
        out.append(Finding("unrecovered_failures", webhook_id,
                           f"{len(firsts):,} event{'s' if len(firsts) != 1 else ''} failed on every attempt and MoeGo "
                           f"deletes {'them' if len(firsts) != 1 else 'it'} within {span_words(rule.params['before'])} "
                           f"(the oldest in {span_words(oldest + RETENTION - now)}): redeliver before then",
                           failures_since=oldest))
    return out


def _status_rules(conn: sqlite3.Connection, hooks: list[WebhookInfo], config: AlertsConfig, now: datetime,
                  evaluation: Evaluation) -> None:
    stale_rule = config.rule_for("collector_stale", "")
    risk_any = any(config.rule_for("at_risk", h.id) for h in hooks)
    if stale_rule is None and not risk_any:
        evaluation.evaluated.update({"collector_stale", "at_risk"})
        return
    status = status_model.archive_status(conn, now)
    live = [w for w in status.webhooks if w.deleted_at is None]
    if stale_rule is not None and live:
        synced = [w.last_success_at for w in live if w.last_success_at is not None]
        newest = max(synced) if synced else None
        span: timedelta = stale_rule.params["span"]
        first_run = status.last_run is not None and status.last_run.started_at
        if newest is None and first_run and now - parse_timestamp(first_run) >= span:
            evaluation.findings.append(Finding("collector_stale", "", f"no webhook has ever synced completely; "
                                               f"the collector has been running for over {span_words(span)}"))
        elif newest is not None and now - newest >= span:
            evaluation.findings.append(Finding("collector_stale", "",
                                               f"no successful collector pass for {span_words(now - newest)} "
                                               f"(last {newest:%Y-%m-%d %H:%M} UTC)"))
    evaluation.evaluated.add("collector_stale")
    for hook in live:
        if not hook.at_risk or config.rule_for("at_risk", hook.webhook_id) is None:
            continue
        seconds = sum((r.end - r.start).total_seconds() for r in hook.at_risk)
        first = min(r.start for r in hook.at_risk)
        evaluation.findings.append(Finding(
            "at_risk", hook.webhook_id,
            f"{span_words(timedelta(seconds=seconds))} of MoeGo's window is not archived and MoeGo starts deleting it "
            f"in {span_words(max(timedelta(0), first + RETENTION - now))}: run 'moego-monitor collect'"))
    evaluation.evaluated.add("at_risk")


_PER_WEBHOOK: dict[str, RuleFn] = {
    "success_rate": _success_rate,
    "consecutive_failures": _consecutive_failures,
    "latency_p95": _latency_p95,
    "silence": _silence,
    "webhook_inactive": _webhook_inactive,
}


def evaluate_rules(conn: sqlite3.Connection, config: AlertsConfig, now: datetime | None = None) -> Evaluation:
    """Every rule for every webhook at ``now`` (default: the current time). Reads only.

    A kind whose evaluation fails (an archive error) is reported in ``errors`` and left out of
    ``evaluated``, so its incidents are neither opened nor resolved on a guess.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    hooks = _webhooks(conn)
    evaluation = Evaluation()
    for kind, fn in _PER_WEBHOOK.items():
        try:
            for hook in hooks:
                if hook.deleted_at and kind != "webhook_inactive":
                    continue
                rule = config.rule_for(kind, hook.id)
                if rule is None:
                    continue
                finding = fn(conn, hook, rule, now)
                if finding is not None:
                    evaluation.findings.append(finding)
            evaluation.evaluated.add(kind)
        except sqlite3.Error as exc:
            evaluation.errors.append(f"{kind}: cannot read the archive ({exc})")
    try:
        evaluation.findings.extend(_unrecovered(conn, hooks, config, now))
        evaluation.evaluated.add("unrecovered_failures")
    except sqlite3.Error as exc:
        evaluation.errors.append(f"unrecovered_failures: cannot read the archive ({exc})")
    try:
        _status_rules(conn, hooks, config, now, evaluation)
    except sqlite3.Error as exc:
        evaluation.errors.append(f"collector_stale/at_risk: cannot read the archive ({exc})")
    order = {kind: i for i, kind in enumerate(RULE_KINDS)}
    evaluation.findings.sort(key=lambda f: (order[f.rule], f.webhook_id))
    return evaluation
