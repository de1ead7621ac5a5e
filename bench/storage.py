"""Issue #9 part A: storage per entry, the in-place upgrade, and the export against ``sqlite3 -csv``.

On a full-volume-like archive (:mod:`bench.moego_archive`: the sandbox's ``--volume full`` history,
written as schema 2's writer wrote it and cached under ``bench/.cache/``), in one run:

- bytes per entry of the archive before and after the upgrade (schema 2 -> 5, in place: compaction
  then VACUUM), per table and index (``dbstat``), against gzip'd JSON lines of the same rows;
- how long the upgrade takes, per million rows;
- ``moego-monitor export`` of every row against ``sqlite3 -csv`` of the same columns in the same order
  on the uncompressed archive: rows per second (wall and CPU) as a ratio, both in subprocesses, run
  alternately; peak RSS of the export; the CSV bytes compared (they must be equal but for the
  encodings' two columns, which ``sqlite3`` prints as 0/1);
- which index each dashboard query uses, from ``EXPLAIN QUERY PLAN`` (:mod:`bench.index_usage`).

``python -m bench.storage [--days N]`` (default 3 days, about 245,000 entries). ``--main-archive FILE``: an
archive at main's schema (upgraded or written by main's own code) measured beside a copy migrated in place by
this version, per table and index, with the migration's time; ``--fresh-days N``: N days written afresh by
this version's writer, as written and after the collector's post-backfill densify; ``--skip-upgrade`` leaves
out the schema-2 rows.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from collectors import archive
from collectors.archive import compaction

from .moego_archive import CACHE, build_moego_archive

__all__ = ["bench_storage", "main"]

def _per_entry(path: Path) -> tuple[int, float, dict[str, float]]:
    conn = sqlite3.connect(path)
    try:
        n = conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        size = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
        parts = {name: total / n for name, total in conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")}
        return n, size / n, parts
    finally:
        conn.close()


def _gzip_jsonl_per_entry(path: Path) -> float:
    """gzip'd JSON lines of every delivery row (all columns, plain text), bytes per entry."""
    conn = sqlite3.connect(path)
    cursor = conn.execute("SELECT * FROM deliveries ORDER BY rowid")
    names = [d[0] for d in cursor.description]
    with tempfile.TemporaryFile() as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb") as out:
            n = 0
            while batch := cursor.fetchmany(2000):
                out.write("".join(json.dumps(dict(zip(names, r)), ensure_ascii=False) + "\n" for r in batch).encode())
                n += len(batch)
        size = raw.tell()
    conn.close()
    return size / n


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _breakdown(label_before: str, before_parts: dict[str, float], label_after: str,
               after_parts: dict[str, float]) -> list[str]:
    lines = [f"    {'':38s} {label_before:>10s} -> {label_after:>10s}"]
    for name in sorted(set(before_parts) | set(after_parts), key=lambda k: -after_parts.get(k, 0)):
        if max(before_parts.get(name, 0), after_parts.get(name, 0)) >= 1:
            lines.append(f"    {name:38s} {before_parts.get(name, 0):10.1f} -> {after_parts.get(name, 0):10.1f} B/entry")
    return lines


def bench_migration(main_archive: Path) -> list[str]:
    """Side by side: an archive as main's schema-now code left it (``main_archive``, built by that code, e.g. from
    ``git archive main``), and the same archive migrated in place by this version (then ``VACUUM``)."""
    lines = [f"load average at start: {_load()}"]
    n, before, before_parts = _per_entry(main_archive)
    with tempfile.TemporaryDirectory(prefix="moego-migrate-", dir=CACHE) as tmp:
        migrated = Path(tmp) / "migrated.db"
        shutil.copyfile(main_archive, migrated)
        conn = archive.connect(migrated)
        version = archive.schema_version(conn)
        started, cpu = time.perf_counter(), time.process_time()
        archive.ensure_db_shape(conn)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _, after, after_parts = _per_entry(migrated)
    lines.append(f"storage, {n:,} full-volume entries: {before:,.0f} B/entry (schema {version}, main) -> {after:,.0f} "
                 f"B/entry (schema {archive.SCHEMA_VERSION}, migrated in place; {before / after:.2f}x smaller)")
    lines.extend(_breakdown(f"schema {version}", before_parts, f"schema {archive.SCHEMA_VERSION}", after_parts))
    lines.append(f"migration in place (schema {version} -> {archive.SCHEMA_VERSION}, VACUUM included): {wall:,.1f} s wall, "
                 f"{cpu:,.1f} s CPU for {n:,} rows = {wall / n * 1e6:,.0f} s wall, {cpu / n * 1e6:,.0f} s CPU per million rows")
    lines.append(f"load average at end: {_load()}")
    return lines


def bench_fresh(days: int = 1) -> list[str]:
    """Bytes per entry of a full-volume archive written afresh by this version's writer (rebuilt, not cached)."""
    path = build_moego_archive(days, refresh=True)
    n, before, parts = _per_entry(path)
    conn = archive.connect(path)
    compaction.densify(conn, n, threshold=0)  # what the collector does after a backfill of 50,000 rows or more
    conn.execute("VACUUM")
    conn.close()
    _, after, after_parts = _per_entry(path)
    return [f"written afresh, {n:,} entries ({days} day): {before:,.0f} B/entry as written, {after:,.0f} B/entry after "
            "the post-backfill densify (webhook indexes rebuilt, FTS merged) and VACUUM",
            *_breakdown("written", parts, "densified", after_parts)]


def bench_storage(days: int = 3, repeat: int = 3) -> list[str]:
    """The lines of the storage and export rows."""
    lines = [f"load average at start: {_load()}"]
    legacy = build_moego_archive(days, schema2=True)  # cached under bench/.cache/
    n, before, before_parts = _per_entry(legacy)
    gz = _gzip_jsonl_per_entry(legacy)
    with tempfile.TemporaryDirectory(prefix="moego-storage-", dir=CACHE) as tmp:
        work = Path(tmp)
        upgraded = work / "upgraded.db"
        shutil.copyfile(legacy, upgraded)
        conn = archive.connect(upgraded)
        started, cpu = time.perf_counter(), time.process_time()
        archive.ensure_db_shape(conn)
        upgrade_wall, upgrade_cpu = time.perf_counter() - started, time.process_time() - cpu
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _, after, after_parts = _per_entry(upgraded)
        lines.append(f"storage, {n:,} full-volume entries: {before:,.0f} B/entry (schema 2) -> {after:,.0f} B/entry "
                     f"(schema {archive.SCHEMA_VERSION}, {before / after:.1f}x smaller); gzip'd JSON lines of the same rows {gz:,.0f} B/entry "
                     f"({after / gz:.1f}x of it)")
        for name in sorted(set(before_parts) | set(after_parts), key=lambda k: -after_parts.get(k, 0)):
            if max(before_parts.get(name, 0), after_parts.get(name, 0)) >= 1:
                lines.append(f"    {name:38s} {before_parts.get(name, 0):8.1f} -> {after_parts.get(name, 0):8.1f} B/entry")
        lines.append(f"upgrade in place (compaction + VACUUM): {upgrade_wall:,.1f} s wall, {upgrade_cpu:,.1f} s CPU for "
                     f"{n:,} rows = {upgrade_wall / n * 1e6:,.0f} s wall per million rows")
        lines.extend(_bench_export(legacy, upgraded, work, n, repeat))
    lines.append(f"load average at end: {_load()}")
    return lines


def _bench_export(legacy: Path, upgraded: Path, work: Path, n: int, repeat: int) -> list[str]:
    """``moego-monitor export`` of the upgraded archive vs ``sqlite3 -csv`` of the schema-2 one (:func:`bench.export.measure`)."""
    from .export import measure

    return measure(legacy, upgraded, work, n, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3, help="days of full-volume history (about 82,000 entries each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--main-archive", type=Path,
                        help="an archive at main's schema (built by main's code): measure it beside its in-place migration")
    parser.add_argument("--fresh-days", type=int, default=0, help="also write this many days afresh and measure them")
    parser.add_argument("--skip-upgrade", action="store_true", help="skip the schema-2 upgrade and export rows")
    args = parser.parse_args()
    if args.main_archive:
        for line in bench_migration(args.main_archive):
            print(line, flush=True)
    if args.fresh_days:
        for line in bench_fresh(args.fresh_days):
            print(line, flush=True)
    if not args.skip_upgrade:
        for line in bench_storage(args.days, args.repeat):
            print(line, flush=True)


if __name__ == "__main__":
    main()
