"""Which index of ``deliveries`` each query of the product uses, from ``EXPLAIN QUERY PLAN``.

:func:`traced_queries` runs the product's own readers and writer lookups on an archive (every dashboard
query with the usual filters, the archive status, the export, a bulk plan, a page saved again) with a
trace callback, so the statements are exactly those the code sends, parameters bound.
:func:`index_usage` explains each and maps every index of ``deliveries`` to the statements that use it.
An index no statement uses costs every write and bytes on disk for nothing: drop it.

``python -m bench.index_usage ARCHIVE`` prints the table.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["traced_queries", "index_usage", "main"]


def traced_queries(conn: sqlite3.Connection, now: datetime) -> list[str]:
    """The distinct statements the product sends to ``conn`` for a representative set of reads and writes."""
    import io

    from collectors import archive
    from collectors.alerts.config import parse_alerts_config
    from collectors.alerts.rules import evaluate_rules
    from collectors.archive import status, writer
    from collectors.archive.export import export_csv
    from collectors.archive.filters import Filters
    from collectors.bulk import plan_bulk
    from dashboard import coverage, queries, stats

    seen: dict[str, None] = {}
    conn.set_trace_callback(lambda sql: seen.setdefault(sql.strip(), None))
    try:
        hooks = [r[0] for r in conn.execute("SELECT DISTINCT webhook_id FROM delivery_hourly LIMIT 3")]
        sample = conn.execute("SELECT id, event_id FROM deliveries ORDER BY rowid DESC LIMIT 1").fetchone()
        seen.clear()
        variants = [
            Filters(time_range="custom", since=now - timedelta(days=1, minutes=7), until=now - timedelta(minutes=7)),
            Filters(time_range="custom", since=now - timedelta(days=2), until=now, webhooks=tuple(hooks[:1])),
            Filters(time_range="custom", since=now - timedelta(days=2), until=now, webhooks=tuple(hooks[:2]),
                    outcome="failed"),
            Filters(time_range="custom", since=now - timedelta(days=1), until=now, search="Biscuit"),
            Filters(time_range="custom", since=now - timedelta(days=1), until=now, status_classes=("5xx",)),
        ]
        for filters in variants:
            window = filters.window(now)
            queries.tiles(conn, filters, window, now)
            for dim in ("error_class", "webhook_id"):
                queries.failures_by(conn, filters, window, dim)
            queries.failures_by_status(conn, filters, window)
            queries.webhook_health(conn, filters, window)
            queries.count_deliveries(conn, filters, window)
            page = queries.delivery_page(conn, filters, window, limit=50)
            if page.next:
                queries.delivery_page(conn, filters, window, after=page.next, limit=50)
            queries.delivery_page(conn, filters, window, order="oldest", limit=50)
            stats.time_series(conn, filters, window, "hour", ZoneInfo("UTC"))
            candidates = queries.failed_candidates(conn, filters, window, limit=20)
            plan_bulk(conn, candidates, now=now)
            export_csv(conn, filters.with_changes(since=now - timedelta(minutes=30)), io.StringIO(), now=now)
        queries.delivery(conn, sample[0])
        queries.event_attempts(conn, sample[1])
        queries.filter_options(conn, now - timedelta(days=15))
        status.archive_status(conn, now)
        coverage.at_risk(conn, now)
        evaluate_rules(conn, parse_alerts_config("", {}), now)  # every built-in alert rule, as a collector pass runs them
        coverage.coverage_gaps(conn, now - timedelta(days=15), now, now=now)
        if not conn.execute("PRAGMA query_only").fetchone()[0]:
            # The writer's lookups: a page saved again (inside a transaction that is rolled back).
            ids = [r[0] for r in conn.execute("SELECT id FROM deliveries ORDER BY rowid DESC LIMIT 5")]
            conn.execute("BEGIN IMMEDIATE")
            try:
                writer.refresh_hourly(conn, {(hooks[0], archive.hour_of(now.strftime("%Y-%m-%dT%H")))})
                conn.execute(writer._SELECT_EXISTING + f"({', '.join('?' for _ in ids)})", ids).fetchall()
            finally:
                conn.execute("ROLLBACK")
    finally:
        conn.set_trace_callback(None)
    return [sql for sql in seen if re.match(r"(?is)^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", sql)
            and "deliveries" in sql and not sql.upper().startswith("EXPLAIN")]


def index_usage(conn: sqlite3.Connection, statements: list[str]) -> dict[str, list[str]]:
    """Every index of ``deliveries`` (with ``"(table scan)"`` for full scans) -> the statements whose plan uses it."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries'")]
    used: dict[str, list[str]] = defaultdict(list, {name: [] for name in names})
    for sql in statements:
        try:
            plan = [r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        except sqlite3.Error:
            continue
        for step in plan:
            match = re.search(r"USING (?:COVERING )?INDEX (\w+)", step)
            if match and match.group(1) in used:
                used[match.group(1)].append(sql)
            elif re.match(r"SCAN deliveries$", step):
                used["(table scan of deliveries)"].append(sql)
    return dict(used)


def main() -> None:
    path = Path(sys.argv[1])
    now = datetime.now(timezone.utc)
    conn = sqlite3.connect(path)
    latest = conn.execute("SELECT MAX(delivered_key) FROM deliveries").fetchone()[0]
    if latest:
        now = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=latest, minutes=1)
    usage = index_usage(conn, traced_queries(conn, now))
    for name, statements in sorted(usage.items(), key=lambda kv: -len(kv[1])):
        print(f"{name:40s} used by {len(statements):3d} statements")
        for sql in statements[:3]:
            print(f"      {sql[:150]}")
    conn.close()


if __name__ == "__main__":
    main()
