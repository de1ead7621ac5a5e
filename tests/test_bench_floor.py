"""The backfill floor (bench/floor.py) stores what the product stores, so its CPU is a fair floor for the product's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import zstandard

from bench.floor import bare_backfill, delivery_rows, entry_rows
from collectors.collect import collect
from collectors.models import WebhookDelivery

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


def test_the_least_writer_stores_parsed_pages_as_the_floor_stores_moegos_json(sandbox) -> None:
    """The writer row's least writer (``delivery_rows``, from parsed deliveries) and the floor (``entry_rows``, from
    MoeGo's JSON) build the same rows and full-text values; only the payload's header JSON is spelled apart."""
    with sandbox.client() as http:
        hook = http.post("/v1/webhooks:list", json={"pagination": {"pageSize": 100}}).json()["webhooks"][0]
        entries = http.post("/v1/webhook/deliveries:list",
                            json={"pagination": {"pageSize": 500}, "webhookId": hook["id"]}).json()["deliveries"]
    parsed = [WebhookDelivery.from_json(entry) for entry in entries]
    from_json, json_texts, last = entry_rows(entries, 10, 99, zstandard.ZstdCompressor().compress)
    from_parsed, parsed_texts, last_parsed = delivery_rows(parsed, 10, 99, zstandard.ZstdCompressor().compress)

    assert len(entries) > 100 and last == last_parsed == 10 + len(entries)
    payload = len(from_json[0]) - 2
    assert [row[:payload] + row[payload + 1:] for row in from_parsed] == [row[:payload] + row[payload + 1:]
                                                                          for row in from_json]
    assert parsed_texts == json_texts and any(body for _, body, _, _ in json_texts)
    unpack = zstandard.ZstdDecompressor().decompress
    for mine, theirs, text in zip(from_parsed, from_json, json_texts):
        mine_parts = unpack(mine[payload][1:]).decode().split("\xff")
        their_parts = unpack(theirs[payload][1:]).decode().split("\xff")
        assert mine_parts[3] == their_parts[3] == text[1] and mine_parts[5] == their_parts[5] == text[2]
