"""``python -m bench.alerts``: evaluating every alert rule on a 1-month vs a 12-month archive, as a ratio.

The two archives have the same density (deliveries a day over 10 webhooks) and end at the same
moment; the 12-month one holds twelve times the rows. Rules read the hourly rollup, recent rows by
index and the status read model, so their cost should not grow with the archive: the ratio should
stay near 1.0x. For contrast, the same run times a naive whole-archive aggregate (what a rule
reading "all deliveries" would cost), whose ratio grows with the rows.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from collectors import archive
from collectors.archive import writer
from collectors.alerts.config import RULE_KINDS, AlertsConfig, parse_alerts_config
from collectors.alerts.rules import evaluate_rules
from collectors.models import Webhook, format_timestamp

from .__main__ import side_by_side
from .archive_gen import build_archive

WEBHOOKS = 10


def _prepare(path: Path, *, rows: int, days: int) -> None:
    """An archive of ``rows`` over ``days``, with the webhooks, sync state and coverage the collector would write."""
    end = build_archive(path, rows=rows, webhooks=WEBHOOKS, days=days)
    conn = archive.connect(path)
    with archive.transaction(conn):
        writer.save_webhooks(conn, [Webhook(id=f"whk_{i}", endpoint_url=f"https://partner.example/hooks/{i}",
                                         is_active=True) for i in range(WEBHOOKS)], seen_at=end)
        for i in range(WEBHOOKS):
            conn.execute("INSERT INTO sync_state (webhook_id, last_success_at) VALUES (?, ?)",
                         (f"whk_{i}", format_timestamp(end)))
            conn.execute("INSERT INTO coverage (webhook_id, start, end) VALUES (?, ?, ?)",
                         (f"whk_{i}", format_timestamp(end - timedelta(days=days)), format_timestamp(end)))
    # No ANALYZE: the collector never runs it, so the planner works without statistics here as it does there (with
    # them, this bench once hid a rule whose plan read every success of a webhook per failed row).
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-month", type=int, default=50_000, help="deliveries per 30 days")
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args()
    end = None
    with tempfile.TemporaryDirectory(prefix="moego-bench-alerts-") as tmp:
        small, large = Path(tmp) / "month.db", Path(tmp) / "year.db"
        started = time.perf_counter()
        _prepare(small, rows=args.rows_per_month, days=30)
        _prepare(large, rows=args.rows_per_month * 12, days=360)
        print(f"built archives of {args.rows_per_month:,} and {args.rows_per_month * 12:,} deliveries "
              f"in {time.perf_counter() - started:.0f}s")
        config = AlertsConfig()
        dbs = {name: archive.connect(path, readonly=True) for name, path in (("month", small), ("year", large))}
        end = dbs["month"].execute("SELECT delivered_at FROM deliveries ORDER BY delivered_key DESC LIMIT 1").fetchone()[0]
        from collectors.models import parse_timestamp

        now = parse_timestamp(end) + timedelta(minutes=1)
        findings = {name: len(evaluate_rules(db, config, now).findings) for name, db in dbs.items()}
        for kind in RULE_KINDS:  # each rule alone: what it reads
            alone = parse_alerts_config(f'[alerts]\nbuiltin = false\n[[alerts.rules]]\nkind = "{kind}"\n', {})
            year_k, month_k = side_by_side(lambda: evaluate_rules(dbs["year"], alone, now),
                                           lambda: evaluate_rules(dbs["month"], alone, now), args.repeat)
            print(f"  {kind:<22} 12 months take {year_k / month_k:4.2f}x the time of 1 month "
                  f"({month_k * 1000:.2f} ms vs {year_k * 1000:.2f} ms)")
        year_t, month_t = side_by_side(lambda: evaluate_rules(dbs["year"], config, now),
                                       lambda: evaluate_rules(dbs["month"], config, now), args.repeat)
        print(f"every rule together, 10 webhooks: 12 months take {year_t / month_t:4.2f}x the time of 1 month "
              f"({month_t * 1000:.1f} ms vs {year_t * 1000:.1f} ms; {findings['month']} vs {findings['year']} findings)")
        for db in dbs.values():
            db.execute("PRAGMA cache_size = -64000")  # 64 MB instead of SQLite's default 2 MB
        year_c, month_c = side_by_side(lambda: evaluate_rules(dbs["year"], config, now),
                                       lambda: evaluate_rules(dbs["month"], config, now), args.repeat)
        print(f"every rule together, 64 MB page cache: 12 months take {year_c / month_c:4.2f}x the time of 1 month "
              f"({month_c * 1000:.1f} ms vs {year_c * 1000:.1f} ms)")

        def naive(conn: sqlite3.Connection) -> object:
            return conn.execute("SELECT webhook_id, COUNT(*), SUM(success = 0) FROM deliveries GROUP BY webhook_id").fetchall()

        year_n, month_n = side_by_side(lambda: naive(dbs["year"]), lambda: naive(dbs["month"]), args.repeat)
        print(f"contrast, a whole-archive aggregate: 12 months take {year_n / month_n:4.2f}x the time of 1 month")
        for db in dbs.values():
            db.close()


if __name__ == "__main__":
    main()
