"""The backfill floor (bench/floor.py) stores what the product stores, so its CPU is a fair floor for the product's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.floor import bare_backfill
from collectors.collect import collect

from tests.collectors.conftest import sandbox_now, sandbox_settings
from tests.conftest import running_sandbox

_ROWS = ("SELECT id, webhook_id, event_type, event_id, response_status, success, error, retry_count, duration_ms, "
         "status_class, error_class, delivered_key FROM deliveries ORDER BY id")


def _read(path: Path) -> tuple[list[tuple], dict[str, list[str]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = {word: [r[0] for r in conn.execute(
            "SELECT d.id FROM deliveries_fts f JOIN deliveries d ON d.rowid = f.rowid WHERE deliveries_fts MATCH ? "
            "ORDER BY d.id", (word,))] for word in ("appointment", "received", "unexpected")}
        return conn.execute(_ROWS).fetchall(), found
    finally:
        conn.close()


def test_the_bare_floor_stores_the_products_rows_and_search_index(tmp_path: Path) -> None:
    with running_sandbox("--history-days", "1") as sandbox:
        result = collect(sandbox_settings(sandbox, tmp_path / "product.db"), now=sandbox_now(sandbox))
        assert result.ok, result.summary_lines
        stored = bare_backfill(sandbox.base_url, sandbox.api_key, tmp_path / "floor.db")
    product_rows, product_found = _read(tmp_path / "product.db")
    floor_rows, floor_found = _read(tmp_path / "floor.db")
    assert stored == len(product_rows) > 500
    assert floor_rows == product_rows
    assert floor_found == product_found and all(floor_found.values())
