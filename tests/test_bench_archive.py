"""The benchmark's bulk-built archive holds exactly what the product's writer would have written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.archive_gen import COMMON_WORD, RARE_WORD, build_archive, build_archive_bulk
from dashboard import queries

from tests.collectors.conftest import assert_archive_consistent

_TABLES = {
    "delivery_hourly": "SELECT * FROM delivery_hourly ORDER BY 1, 2, 3, 4, 5, 6",
    "delivery_daily": "SELECT * FROM delivery_daily ORDER BY 1, 2, 3, 4, 5, 6",
    "delivery_hourly_status": "SELECT * FROM delivery_hourly_status ORDER BY 1, 2, 3, 4, 5",
    "delivery_daily_status": "SELECT * FROM delivery_daily_status ORDER BY 1, 2, 3, 4, 5",
}


def _read(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {name: conn.execute(sql).fetchall() for name, sql in _TABLES.items()}
        # Each delivery as a reader reads it: the writer compresses the bulky fields into a payload, the bulk
        # build leaves them in their text columns (as an archive before the payload column); both read alike.
        ids = [row[0] for row in conn.execute("SELECT id FROM deliveries ORDER BY id")]
        out["deliveries"] = [queries.delivery(conn, delivery_id) for delivery_id in ids]
        for word in (RARE_WORD, COMMON_WORD, "dlv", "deadline"):
            out[word] = conn.execute(
                "SELECT d.id FROM deliveries_fts f JOIN deliveries d ON d.rowid = f.rowid "
                "WHERE deliveries_fts MATCH ? ORDER BY d.id", (f'"{word}"',)).fetchall()
        return out
    finally:
        conn.close()


def test_a_bulk_built_archive_equals_one_written_through_the_writer(tmp_path: Path) -> None:
    build_archive(tmp_path / "writer.db", rows=1_200, webhooks=3, days=2)
    build_archive_bulk(tmp_path / "bulk.db", rows=1_200, webhooks=3, days=2, batch=500)
    written, bulk = _read(tmp_path / "writer.db"), _read(tmp_path / "bulk.db")
    assert bulk == written
    assert len(bulk["deliveries"]) == 1_200 and len(bulk[COMMON_WORD]) == 1_200
    assert_archive_consistent(tmp_path / "bulk.db")
