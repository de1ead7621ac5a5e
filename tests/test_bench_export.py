"""The export row's baseline (bench/export.py) reads the rows the export writes, in the export's order, on both archives
the benchmark gives it: the schema-3 archive ``bench.storage`` upgrades from, and one at the current schema."""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.export import baseline_query
from collectors import archive
from collectors.archive.export import write_export

from tests.archive.legacy import legacy_archive, varied_deliveries
from tests.seed import ALPHA, BETA

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _baseline_ids(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute(baseline_query(path))]
    finally:
        conn.close()


def test_the_baseline_reads_the_exported_rows_in_order_before_and_after_the_upgrade(tmp_path: Path) -> None:
    legacy = tmp_path / "schema3.db"
    legacy_archive(legacy, varied_deliveries(600, (ALPHA, BETA), NOW), seen_at=NOW)
    upgraded = tmp_path / "current.db"
    shutil.copyfile(legacy, upgraded)
    conn = archive.connect(upgraded)
    archive.ensure_db_shape(conn)
    conn.close()

    out = tmp_path / "export.csv"
    write_export(upgraded, NOW - timedelta(days=1), NOW + timedelta(days=1), out_path=out)
    exported = [row[0] for row in csv.reader(io.StringIO(out.read_text(encoding="utf-8")))][1:]

    assert len(exported) == 600
    assert _baseline_ids(legacy) == exported
    assert _baseline_ids(upgraded) == exported
