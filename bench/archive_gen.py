"""Synthetic archives for the benchmark: through the product's own writer, or in bulk, cached on disk.

:func:`build_archive` writes through :func:`collectors.archive.writer.save_deliveries` (rollups and the
search index as in production, 500 rows a transaction). :func:`build_archive_bulk` writes the same rows
(each made by :func:`collectors.archive.writer.delivery_row`) with one ``executemany`` per batch and
builds the indexes, rollups and full-text index afterwards in SQL, which is what the writer would have
produced (the synthetic bodies have no base64 payload, so the index holds them as logged;
``tests/test_bench_archive.py`` checks the two builds agree). :func:`cached_archive` keeps bulk archives
under ``bench/.cache/`` (ignored by git) so a rerun of ``make bench`` reuses them.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collectors import archive
from collectors.archive import compaction, rollups, when, writer
from collectors.models import WebhookDelivery

#: A word in one synthetic row out of RARE_EVERY, and a word in every row (for the search benchmarks).
RARE_WORD, RARE_EVERY, COMMON_WORD = "flea", 100_000, "bath"

EVENT_TYPES = ("APPOINTMENT_CREATED", "APPOINTMENT_UPDATED", "CUSTOMER_UPDATED", "PET_UPDATED", "PET_CREATED")


def synthetic_deliveries(count: int, *, webhooks: int, days: int, end: datetime, seed: int = 1):
    """``count`` deliveries spread evenly over ``days`` before ``end`` across ``webhooks`` webhooks."""
    rng = random.Random(seed)
    step = timedelta(days=days) / count
    start = end - timedelta(days=days)
    for i in range(count):
        ok = rng.random() > 0.04
        # One row in RARE_EVERY mentions RARE_WORD (a "rare word" search); every row mentions COMMON_WORD.
        note = f"Rex needs a {RARE_WORD} {COMMON_WORD}" if i % RARE_EVERY == RARE_EVERY // 2 else f"Rex needs a {COMMON_WORD}"
        status = 200 if ok else rng.choice((500, 502, 503, 404, 0))
        event_id = f"evt-{i:09d}"
        body = json.dumps({"id": event_id, "type": EVENT_TYPES[i % 5], "companyId": "cmp_1",
                           "payload": {"customerId": str(rng.randrange(10**8)), "note": note}})
        yield WebhookDelivery(
            id=f"dlv-{i:09d}", webhook_id=f"whk_{i % webhooks}", event_type=EVENT_TYPES[i % 5], event_id=event_id,
            request_url="https://partner.example/hooks", delivered_to="203.0.113.7:443",
            request_headers={"User-Agent": ["Moego/Webhook-1.0"], "Authorization": ["Bearer t"],
                             "X-Moe-Nonce": [str(rng.randrange(10**17))]},
            request_body=body.encode(), response_status=status, response_body=b'{"received":true}',
            delivered_at=start + step * i, duration_ms=int(rng.lognormvariate(5, 0.7)), success=ok,
            error="" if ok else ("unexpected status %d" % status if status else "context deadline exceeded"),
            retry_count=0 if ok else 3, request_format="CONTENT_TYPE_JSON", response_format="CONTENT_TYPE_JSON",
        )


def build_archive(path: Path, *, rows: int, webhooks: int = 10, days: int = 30, end: datetime | None = None) -> datetime:
    """Write ``rows`` deliveries into a new archive at ``path``, 500 per transaction; returns ``end``."""
    end = end or datetime(2026, 11, 1, tzinfo=timezone.utc)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    page: list[WebhookDelivery] = []
    for delivery in synthetic_deliveries(rows, webhooks=webhooks, days=days, end=end):
        page.append(delivery)
        if len(page) == 500:
            with archive.transaction(db):
                writer.save_deliveries(db, page, seen_at=end)
            page = []
    if page:
        with archive.transaction(db):
            writer.save_deliveries(db, page, seen_at=end)
    db.execute("ANALYZE")
    db.close()
    return end


#: Bump when the synthetic rows or the bulk build change, so cached archives are rebuilt.
GENERATOR_VERSION = 4  # 3: the daily status rollup; 4: the delivery time as an integer
CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def build_archive_bulk(path: Path, *, rows: int, webhooks: int = 10, days: int = 30, end: datetime | None = None,
                       batch: int = 20_000) -> datetime:
    """The archive :func:`build_archive` writes, built in bulk: rows first, then indexes, rollup and FTS."""
    end = end or datetime(2026, 11, 1, tzinfo=timezone.utc)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    db.execute("PRAGMA synchronous=OFF")  # a benchmark's archive: rebuilt if a crash left it half written
    db.execute("PRAGMA cache_size=-262144")
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    # The payload fields stay in their text columns (as an archive before the payload column: it reads the
    # same); the seen times and the delivery time are stored as the writer stores them
    # (collectors.archive.compaction.SEEN_DDL, collectors.archive.when).
    columns = writer.ALL_COLUMNS[:-2]
    at = columns.index("delivered_at")
    names = (*writer.TEXT_COLUMNS, "seen_us", "delivered_us")
    insert = f"INSERT INTO deliveries ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    seen = ("", "", compaction.seen_us(end))
    page: list[tuple] = []
    for delivery in synthetic_deliveries(rows, webhooks=webhooks, days=days, end=end):
        row = writer.delivery_row(delivery, seen_at=end)
        values = [row[c] for c in columns]
        values[at], us = when.stored_time(delivery.delivered_at, row["delivered_at"])  # type: ignore[arg-type]
        page.append((*values, *seen, us))
        if len(page) == batch:
            with archive.transaction(db):
                db.executemany(insert, page)
            page = []
    with archive.transaction(db):
        db.executemany(insert, page)
        for _, sql in indexes:
            db.execute(sql)
        rollups.rebuild_from_raw(db)
        # The synthetic request bodies carry no base64 payload: index_text() is the body as logged.
        db.execute("INSERT INTO deliveries_fts (rowid, request_body, response_body, error) "
                   "SELECT rowid, request_body, response_body, error FROM deliveries")
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return end


def cached_archive(rows: int, *, webhooks: int = 10, days: int = 30, log=print) -> tuple[Path, datetime]:
    """A bulk-built archive of ``rows`` rows under :data:`CACHE_DIR`, built once and then reused.

    Its file is named by the generator's version and the schema it was built at: a schema change builds a new
    one (1 M rows ~2 min, 5 M ~15 min under load). It is still passed through
    :func:`collectors.archive.ensure_db_shape` on use (a no-op at its own schema).
    """
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # The schema is in the name: a cached archive from a branch whose migrations were numbered otherwise is
    # never "migrated" into the wrong shape; each schema builds its own.
    path = CACHE_DIR / f"archive-v{GENERATOR_VERSION}-s{archive.SCHEMA_VERSION}-{rows}-{webhooks}w-{days}d.db"
    end = datetime(2026, 11, 1, tzinfo=timezone.utc)
    if not path.exists():
        partial = path.with_suffix(".building")
        log(f"building a {rows:,}-row archive in {CACHE_DIR} (once; later runs reuse it) ...")
        build_archive_bulk(partial, rows=rows, webhooks=webhooks, days=days, end=end)
        partial.rename(path)
    db = archive.connect(path)
    try:
        archive.ensure_db_shape(db, on_migrate=lambda v: log(f"migrated the cached {rows:,}-row archive to schema {v}"))
    finally:
        db.close()
    return path, end
