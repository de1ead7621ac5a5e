"""The last migrations: compact rows archived by earlier versions, in place, resumably.

Two Batched steps (:class:`collectors.archive.schema.Batched`), each rewriting rows a batch at a time:

- :func:`compact` (schema 8 -> 9) compresses the payloads of rows archived before the ``payload`` column;
- :func:`compact_rows` (schema 10 -> 11) keys each payload to its row (:mod:`collectors.archive.codec`:
  what it repeats from the row is stored once), with a dictionary trained on keyed payloads, moves the
  seen times from text to integers (:data:`SEEN_DDL`), then merges the full-text index into one segment.

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

import calendar
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import codec, search_index, when

__all__ = ["BATCH", "DENSIFY_AFTER", "DENSIFY_SHARE", "SEEN_DDL", "Progress", "compact", "compact_rows", "merge_search_index",
           "progress", "note", "densify", "seen_us", "seen_text"]

#: Rows compacted per committed transaction.
BATCH = 2_000
#: Leaf pages merged per committed step of :func:`merge_search_index`.
MERGE_PAGES = 2_000
#: A collector pass that added at least this many rows rebuilds the webhook-first indexes (:func:`densify`)...
DENSIFY_AFTER = 50_000
#: ... when they are also at least this share of the archive's rows. A rebuild rewrites the whole of both indexes
#: and merges the whole full-text index, while only the pass's own rows sit in half-empty pages: a day's catch-up
#: into a year's archive (36 M rows at MoeGo's ceiling) would rewrite gigabytes to tidy megabytes. With the share,
#: what a rebuild costs is at most ten times what the pass added, whatever the archive's size.
DENSIFY_SHARE = 0.1
#: Indexes whose keys a backfill inserts out of order: MoeGo lists each webhook's entries newest first,
#: so page after page lands before the last one and the B-tree splits leave their pages half empty.
_SPARSE_INDEXES = ("deliveries_by_webhook_time", "deliveries_by_webhook_outcome_time")

_TEXTS = ", ".join(codec.PAYLOAD_FIELDS)
_KEYS = ", ".join(codec.KEY_COLUMNS)
_WIDTH = len(codec.KEY_COLUMNS)
_REQUEST_BODY = codec.PAYLOAD_FIELDS.index("request_body")
_RESPONSE_BODY = codec.PAYLOAD_FIELDS.index("response_body")
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


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: :func:`collectors.archive.schema.transaction` (committed when the block ends, rolled
    back if it raises, the WAL kept in bounds after the commit). Imported when called: schema imports this module."""
    from .schema import transaction

    with transaction(conn):
        yield


def compact(conn: sqlite3.Connection, *, batch: int = BATCH, vacuum: bool = True,
            on_batch: Callable[[Progress], None] | None = None) -> int:
    """Compact every row still holding its payload as text; returns how many rows were compacted.

    Commits each batch; call outside a transaction. ``on_batch`` is told the progress after each one.
    """
    with _write(conn):
        if codec.Codec(conn).dict_id == 0 and conn.execute(f"SELECT 1 FROM deliveries WHERE {_PENDING} LIMIT 1").fetchone():
            codec.train(conn)
    last_rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    after, done = 0, 0
    while True:
        with _write(conn):
            coder = codec.Codec(conn)
            rows = conn.execute(
                f"SELECT rowid, payload, {_KEYS}, {_TEXTS} FROM deliveries WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, batch),
            ).fetchall()
            updates = []
            for rowid, payload, *rest in rows:
                keys, texts = rest[:_WIDTH], rest[_WIDTH:]
                if not any(texts):
                    continue
                updates.append((coder.encode(codec.stored_values(coder, payload, texts, keys), keys), rowid))
            conn.executemany(f"UPDATE deliveries SET payload = ?, {_CLEAR} WHERE rowid = ?", updates)
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
    columns = {r[1] for r in conn.execute("PRAGMA table_info(deliveries)")}
    pending = f"{_PENDING} OR first_seen_text != ''" if "first_seen_text" in columns else _PENDING
    if "delivered_text" in columns:  # schema 13 on: a delivery time still to move (collectors.archive.when)
        pending += f" OR ({when.PENDING_SQL})"
    first = conn.execute(f"SELECT rowid FROM deliveries WHERE {pending} ORDER BY rowid LIMIT 1").fetchone()
    if first is None:
        return None
    last_rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    return Progress(first[0] - 1, last_rowid)


def note(conn: sqlite3.Connection) -> str | None:
    """One line for a reader while the archive is being compacted with rows left, else ``None``."""
    from .schema import READABLE_FROM  # schema imports this module for its migration list

    from .schema import SCHEMA_VERSION

    if not READABLE_FROM <= conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        return None
    done = progress(conn)
    if done is None:
        return None
    return (f"The archive is being compacted by the collector ({done.fraction:.0%} done); "
            "everything reads as usual meanwhile.")


def densify(conn: sqlite3.Connection, new_rows: int, *, threshold: int = DENSIFY_AFTER,
            share: float = DENSIFY_SHARE) -> bool:
    """After a pass that added ``new_rows`` (a backfill), rebuild the indexes a backfill leaves half empty:
    when ``new_rows`` is at least ``threshold`` and at least ``share`` of the archive's rows (so a first backfill
    always, a catch-up into an archive more than ten times its size never).

    ``REINDEX`` writes each afresh in key order, full pages; the pages freed are reused by later writes.
    About 1 s per 80,000 rows of the archive under load; readers carry on meanwhile (WAL). Returns whether it ran.
    Small passes need none of it: rows newer than a webhook's last go at the end of its key range, in full pages.
    """
    if new_rows < threshold:
        return False
    # The archive's rows: rowids are given in order and rows are never deleted, so the largest is the count.
    archived = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    if new_rows < share * archived:
        return False
    for name in _SPARSE_INDEXES:
        with _write(conn):
            conn.execute(f"REINDEX {name}")
    merge_search_index(conn)
    return True


def merge_search_index(conn: sqlite3.Connection, *, pages: int = MERGE_PAGES) -> int:
    """Merge the full-text index's segments into one, ``pages`` leaf pages per committed step (resumable:
    FTS5 keeps an unfinished merge in the index itself, so a killed one carries on at the next call).

    Pages written a page at a time leave many small segments that repeat their terms; one segment holds
    each term once (about 5% smaller on a full-volume archive). Search results are the same. Returns the steps.
    """
    steps = 0
    while steps < 100_000:
        with _write(conn):
            before = conn.total_changes
            conn.execute("INSERT INTO deliveries_fts (deliveries_fts, rank) VALUES ('merge', ?)", (-pages,))
            changed = conn.total_changes - before
        steps += 1
        if changed <= 1:
            return steps
    return steps


#: Seen times stored as integers (schema 10): ``first_seen_at`` / ``last_seen_at`` become generated columns
#: rendering them as the text they were (``2026-11-01T00:00:00.000000Z``); rows archived before keep their
#: text in the renamed columns until :func:`compact_rows` moves it (a non-empty text column wins).
_RENDER = "(strftime('%Y-%m-%dT%H:%M:%S', {us} / 1000000, 'unixepoch') || printf('.%06dZ', {us} % 1000000))"
SEEN_DDL = f"""
ALTER TABLE deliveries RENAME COLUMN first_seen_at TO first_seen_text;
ALTER TABLE deliveries RENAME COLUMN last_seen_at TO last_seen_text;
-- First seen, microseconds since the epoch (NULL while first_seen_text holds it); last seen, NULL when the same.
ALTER TABLE deliveries ADD COLUMN seen_us INTEGER;
ALTER TABLE deliveries ADD COLUMN last_seen_us INTEGER;
ALTER TABLE deliveries ADD COLUMN first_seen_at TEXT GENERATED ALWAYS AS (
    CASE WHEN first_seen_text != '' THEN first_seen_text ELSE {_RENDER.format(us="seen_us")} END) VIRTUAL;
ALTER TABLE deliveries ADD COLUMN last_seen_at TEXT GENERATED ALWAYS AS (
    CASE WHEN last_seen_text != '' THEN last_seen_text
    ELSE {_RENDER.format(us="COALESCE(last_seen_us, seen_us)")} END) VIRTUAL;
-- What a Batched step has done that its rows do not show (compact_rows: the keyed dictionary's id).
CREATE TABLE IF NOT EXISTS compaction_state (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z")


def seen_us(at: datetime) -> int:
    """A seen time (aware) as stored: microseconds since the epoch."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def seen_text(us: int) -> str:
    """What the generated column shows for ``us`` (the text :func:`collectors.models.format_timestamp` writes)."""
    seconds, micros = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def _us_of(text: str) -> int | None:
    """The microseconds of a stored seen text, or ``None`` when the integer would not render back as exactly it."""
    match = _STAMP.fullmatch(text or "")
    if match is None or not "1970" <= match.group(1) <= "9999":
        return None
    y, mo, d, h, mi, sec, micros = (int(g) for g in match.groups())
    try:
        us = calendar.timegm((y, mo, d, h, mi, sec)) * 1_000_000 + micros
    except (OverflowError, ValueError):
        return None
    return us if us >= 0 and seen_text(us) == text else None


def compact_rows(conn: sqlite3.Connection, *, batch: int = BATCH, vacuum: bool = True,
                 on_batch: Callable[[Progress], None] | None = None) -> int:
    """Schema 10 -> 11: key every payload written before to its row (a new dictionary, trained on keyed
    payloads, once), move every text seen time into ``seen_us`` / ``last_seen_us``, then merge the full-text
    index. Returns how many rows were rewritten. Commits each batch; call outside a transaction.

    A row is pending while ``first_seen_text`` is not empty, and rewritten whole in one batch (its payload
    and seen times): killed at any point, the next run carries on with the rows still pending.

    An archive whose full-text index keeps per-row sizes (created before schema 11) gets a new one without
    (``columnsize=0``, 12 B less per entry), filled in the same batches (``deliveries_fts_next``, how far
    kept in ``compaction_state``) and put in place of the old one in one transaction at the end: searches
    read the old, complete index until then.
    """
    with _write(conn):
        trained = conn.execute("SELECT value FROM compaction_state WHERE name = 'keyed_dict'").fetchone()
        if trained is None:
            pending = conn.execute("SELECT 1 FROM deliveries WHERE first_seen_text != '' LIMIT 1").fetchone()
            new_id = codec.train(conn) if pending and codec.Codec(conn).dict_id else None
            conn.execute("INSERT INTO compaction_state (name, value) VALUES ('keyed_dict', ?)", (str(new_id or 0),))
        fts_at = conn.execute("SELECT value FROM compaction_state WHERE name = 'fts_next'").fetchone()
        if fts_at is None and conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'deliveries_fts_docsize'").fetchone():
            conn.execute(search_index.FTS_DDL.replace("deliveries_fts", "deliveries_fts_next", 1))
            conn.execute("INSERT INTO compaction_state (name, value) VALUES ('fts_next', '0')")
            fts_at = ("0",)
    last_rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    after, done = 0, 0
    while True:
        with _write(conn):
            coder = codec.Codec(conn)
            # Read inside the write lock: another process may be migrating the same archive.
            fts_at = conn.execute("SELECT value FROM compaction_state WHERE name = 'fts_next'").fetchone()
            fts_after = None if fts_at is None else int(fts_at[0])
            rows = conn.execute(
                f"SELECT rowid, first_seen_text, last_seen_text, request_body_base64, error, payload, {_KEYS}, {_TEXTS} "
                "FROM deliveries WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, batch)).fetchall()
            updates, indexed = [], []
            for rowid, first, last, request_b64, error, payload, *rest in rows:
                keys, texts = rest[:_WIDTH], rest[_WIDTH:]
                if fts_after is not None and rowid > fts_after:
                    plain = codec.fields(coder, payload, texts, keys)
                    indexed.append((rowid, *search_index.indexed_values({
                        "request_body": plain[_REQUEST_BODY], "request_body_base64": request_b64,
                        "response_body": plain[_RESPONSE_BODY], "error": error})))
                if not first:
                    continue
                blob = coder.encode(codec.stored_values(coder, payload, texts, keys), keys)
                first_us, last_us = _us_of(first), _us_of(last)
                updates.append((
                    blob,
                    first_us, "" if first_us is not None else first,
                    None if last == first or last_us is None else last_us,
                    "" if (last == first and first_us is not None) or last_us is not None else last,
                    rowid,
                ))
            conn.executemany(
                f"UPDATE deliveries SET payload = ?, seen_us = ?, first_seen_text = ?, last_seen_us = ?, "
                f"last_seen_text = ?, {_CLEAR} WHERE rowid = ?", updates)
            if indexed:
                conn.executemany("INSERT INTO deliveries_fts_next (rowid, request_body, response_body, error) "
                                 "VALUES (?, ?, ?, ?)", indexed)
                fts_after = indexed[-1][0]
                conn.execute("UPDATE compaction_state SET value = ? WHERE name = 'fts_next'", (str(fts_after),))
        done += len(updates)
        if not rows:
            break
        after = rows[-1][0]
        if on_batch:
            on_batch(Progress(after, last_rowid))
    swapped = False
    with _write(conn):
        if conn.execute("SELECT 1 FROM compaction_state WHERE name = 'fts_next'").fetchone():
            conn.execute("DROP TABLE deliveries_fts")
            conn.execute("ALTER TABLE deliveries_fts_next RENAME TO deliveries_fts")
            conn.execute("DELETE FROM compaction_state WHERE name = 'fts_next'")
            swapped = True
    merge_search_index(conn)
    if vacuum and (done or swapped):  # the old index's pages are free too
        conn.execute("VACUUM")
    return done
