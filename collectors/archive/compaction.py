"""The last migration: compress the payloads of rows archived before the ``payload`` column, in place, resumably.

:func:`compact` moves each row's :data:`~collectors.archive.codec.PAYLOAD_FIELDS` from its text columns
into its ``payload`` BLOB (:mod:`collectors.archive.codec`), :data:`BATCH` rows per transaction, in
rowid order, then ``VACUUM`` so the file gives the freed space back. Each batch is committed on its
own; a process killed at any moment (``kill -9`` included) leaves every row either as it was or
compacted, never both and never lost, and the next run carries on: rows already compacted have
empty text columns and are skipped. The schema version moves past it only after the whole table is done.

Readers do not wait for it: from :data:`~collectors.archive.schema.READABLE_FROM` on they read a row from its text columns or its payload
alike (:func:`collectors.archive.codec.fields`), so the dashboard and the export keep working while
it runs, and :func:`progress` says how far it is. The bodies and errors are unchanged, so the
full-text index is left as it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from . import codec

__all__ = ["BATCH", "DENSIFY_AFTER", "Progress", "compact", "progress", "note", "densify"]

#: Rows compacted per committed transaction.
BATCH = 2_000
#: A collector pass that added at least this many rows rebuilds the webhook-first indexes (:func:`densify`).
DENSIFY_AFTER = 50_000
#: Indexes whose keys a backfill inserts out of order: MoeGo lists each webhook's entries newest first,
#: so page after page lands before the last one and the B-tree splits leave their pages half empty.
_SPARSE_INDEXES = ("deliveries_by_webhook_time", "deliveries_by_webhook_outcome_time")

_TEXTS = ", ".join(codec.PAYLOAD_FIELDS)
_PENDING = " OR ".join(f"{name} != ''" for name in codec.PAYLOAD_FIELDS)
_CLEAR = ", ".join(f"{name} = ''" for name in codec.PAYLOAD_FIELDS)


@dataclass(frozen=True)
class Progress:
    """How far a compaction is: rows up to ``rowid`` done, of ``last_rowid``."""

    rowid: int
    last_rowid: int

    @property
    def fraction(self) -> float:
        """Done, from 0.0 to 1.0."""
        return 1.0 if self.last_rowid <= 0 else min(1.0, self.rowid / self.last_rowid)


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def compact(conn: sqlite3.Connection, *, batch: int = BATCH, vacuum: bool = True,
            on_batch: Callable[[Progress], None] | None = None) -> int:
    """Compact every row still holding its payload as text; returns how many rows were compacted.

    Commits each batch; call outside a transaction. ``on_batch`` is told the progress after each one.
    """
    _begin(conn)
    try:
        if codec.Codec(conn).dict_id == 0 and conn.execute(f"SELECT 1 FROM deliveries WHERE {_PENDING} LIMIT 1").fetchone():
            codec.train(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    last_rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    after, done = 0, 0
    while True:
        _begin(conn)
        try:
            coder = codec.Codec(conn)
            rows = conn.execute(
                f"SELECT rowid, payload, {_TEXTS} FROM deliveries WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, batch),
            ).fetchall()
            updates = []
            for rowid, payload, *texts in rows:
                if not any(texts):
                    continue
                updates.append((coder.encode(codec.stored_values(coder, payload, texts)), rowid))
            conn.executemany(f"UPDATE deliveries SET payload = ?, {_CLEAR} WHERE rowid = ?", updates)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done += len(updates)
        if not rows:
            break
        after = rows[-1][0]
        if on_batch:
            on_batch(Progress(after, last_rowid))
    if vacuum and done:
        conn.execute("VACUUM")
    return done


def progress(conn: sqlite3.Connection) -> Progress | None:
    """How far the compaction of an archive under way is (``None`` when nothing is left to compact).

    Reads the lowest rowid still holding text (a scan up to it) and the highest rowid.
    """
    first = conn.execute(f"SELECT rowid FROM deliveries WHERE {_PENDING} ORDER BY rowid LIMIT 1").fetchone()
    if first is None:
        return None
    last_rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    return Progress(first[0] - 1, last_rowid)


def note(conn: sqlite3.Connection) -> str | None:
    """One line for a reader while the archive is being compacted with rows left, else ``None``."""
    from .schema import READABLE_FROM  # schema imports this module for its migration list

    if conn.execute("PRAGMA user_version").fetchone()[0] != READABLE_FROM:
        return None
    done = progress(conn)
    if done is None:
        return None
    return (f"The archive is being compacted by the collector ({done.fraction:.0%} done); "
            "everything reads as usual meanwhile.")


def densify(conn: sqlite3.Connection, new_rows: int, *, threshold: int = DENSIFY_AFTER) -> bool:
    """After a pass that added ``new_rows`` (a backfill), rebuild the indexes a backfill leaves half empty.

    ``REINDEX`` writes each afresh in key order, full pages; the pages freed are reused by later writes.
    About 1 s per 80,000 rows under load; readers carry on meanwhile (WAL). Returns whether it ran.
    """
    if new_rows < threshold:
        return False
    for name in _SPARSE_INDEXES:
        _begin(conn)
        try:
            conn.execute(f"REINDEX {name}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return True
