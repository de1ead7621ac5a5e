"""The archive's full-text index (``deliveries_fts``): what it holds, and how the writer keeps it.

``deliveries_fts`` is a *contentless* FTS5 table (``content=''``): it holds the index only, never a
second copy of a body. Its rowid is the ``deliveries`` rowid; its columns are

- ``request_body``: :func:`collectors.bodies.index_text` of the body, i.e. the body exactly as logged,
  except that a payload MoeGo sent as base64 is there as its decoded JSON (so a customer's name inside
  it is found); a body with no base64 payload is indexed exactly as logged, as before;
- ``response_body`` and ``error``: as logged.

The writer supplies that text, a page at a time, in the transaction that writes the rows
(:func:`index_saved`, called by :func:`collectors.archive.writer.save_deliveries`): there are no triggers.

Invariant: the index entry of a row is :func:`indexed_values` of its stored columns. A contentless
FTS5 table does not remember what it indexed, so removing an entry means supplying the same values
again: they are recomputed from the row. Hence (1) a row's body or error is never rewritten without
:func:`index_saved` seeing the old and the new values, (2) code that deletes rows must call
:func:`unindex` first, and (3) a change to what :func:`indexed_values` returns needs a migration that
calls :func:`reindex_all`.

It keeps no per-row token counts (``columnsize=0``, from schema 11 for new archives): nothing ranks results
(no ``bm25``, no ``xColumnSize``). Archives created before keep theirs (12 B per entry; dropping them
would mean indexing every row again).

Queries read only rowids from it (``SELECT rowid FROM deliveries_fts WHERE deliveries_fts MATCH ?``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..bodies import index_text
from . import codec

__all__ = ["FTS_DDL", "indexed_values", "rowids_of", "index_saved", "unindex", "reindex_all", "migrate_to_writer_index"]

#: The index's definition (schema version 2 on).
FTS_DDL = ("CREATE VIRTUAL TABLE deliveries_fts USING fts5(request_body, response_body, error, content='', "
           "columnsize=0)")

_INSERT = "INSERT INTO deliveries_fts (rowid, request_body, response_body, error) VALUES (?, ?, ?, ?)"
_DELETE = ("INSERT INTO deliveries_fts (deliveries_fts, rowid, request_body, response_body, error) "
           "VALUES ('delete', ?, ?, ?, ?)")
_INDEXED_COLUMNS = ("request_body", "request_body_base64", "response_body", "error")
_CHUNK = 500


def indexed_values(row: Mapping[str, Any]) -> tuple[str, str, str]:
    """What the index holds for a row (``request_body``, ``request_body_base64``, ``response_body``, ``error``)."""
    return (
        index_text(row["request_body"], is_base64=bool(row["request_body_base64"])),
        row["response_body"],
        row["error"],
    )


def rowids_of(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    """The ``deliveries`` rowid of each of ``ids`` that is archived."""
    found: dict[str, int] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        placeholders = ", ".join("?" for _ in chunk)
        found.update(conn.execute(f"SELECT id, rowid FROM deliveries WHERE id IN ({placeholders})", chunk))
    return found


def index_saved(
    conn: sqlite3.Connection,
    inserted: Sequence[Mapping[str, Any]],
    updated: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]] = (),
    *,
    rowids: Mapping[str, int] | None = None,
) -> None:
    """Index a page the writer just saved, in its transaction: ``inserted`` rows (as written) and
    ``updated`` pairs ``(old row, new row)``, re-indexed only when a body or the error changed.
    ``rowids`` (id -> rowid of those rows) saves looking them up when the caller already has them.
    """
    changed = [(old, new) for old, new in updated if any(old[c] != new[c] for c in _INDEXED_COLUMNS)]
    if not inserted and not changed:
        return
    if rowids is None:
        rowids = rowids_of(conn, [r["id"] for r in inserted] + [new["id"] for _, new in changed])
    conn.executemany(_DELETE, [(rowids[new["id"]], *indexed_values(old)) for old, new in changed])
    conn.executemany(_INSERT, [(rowids[r["id"]], *indexed_values(r)) for r in [*inserted, *(n for _, n in changed)]])


def _stored_rows(conn: sqlite3.Connection, where: str, params: Sequence[object] = ()) -> Iterable[list[tuple]]:
    """Batches of ``(rowid, indexed values)`` of the rows matching ``where``, bodies read through the codec
    (schema 4 on: :mod:`collectors.archive.codec`; before, from the text columns)."""
    has_payload = any(r[1] == "payload" for r in conn.execute("PRAGMA table_info(deliveries)"))
    payload = "payload" if has_payload else "NULL"
    cursor = conn.execute(f"SELECT rowid, {', '.join(_INDEXED_COLUMNS)}, {payload}, {', '.join(codec.KEY_COLUMNS)} "
                          f"FROM deliveries WHERE {where}", tuple(params))
    coder = codec.Codec(conn) if has_payload else None
    at = (codec.PAYLOAD_FIELDS.index("request_body"), codec.PAYLOAD_FIELDS.index("response_body"))
    while batch := cursor.fetchmany(_CHUNK):
        out = []
        for rowid, request_body, request_b64, response_body, error, blob, *keys in batch:
            if blob is not None:
                decoded = coder.decode(blob, keys)  # type: ignore[union-attr]
                request_body = request_body or decoded[at[0]]
                response_body = response_body or decoded[at[1]]
            row = {"request_body": request_body, "request_body_base64": request_b64, "response_body": response_body,
                   "error": error}
            out.append((rowid, *indexed_values(row)))
        yield out


def unindex(conn: sqlite3.Connection, where: str, params: Sequence[object] = ()) -> int:
    """Remove the index entries of the ``deliveries`` rows matching ``where`` (call before deleting them)."""
    removed = 0
    for batch in _stored_rows(conn, where, params):
        conn.executemany(_DELETE, batch)
        removed += len(batch)
    return removed


def reindex_all(conn: sqlite3.Connection) -> int:
    """Empty the index and index every row again (in rowid order, a batch at a time); returns how many."""
    conn.execute("INSERT INTO deliveries_fts (deliveries_fts) VALUES ('delete-all')")
    count = 0
    for batch in _stored_rows(conn, "1 ORDER BY rowid"):
        conn.executemany(_INSERT, batch)
        count += len(batch)
    return count


def migrate_to_writer_index(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the trigger-fed external-content index becomes the writer-fed contentless one,
    and every archived row is indexed again (so words inside base64 payloads already archived are found).
    """
    for trigger in ("deliveries_fts_ai", "deliveries_fts_ad", "deliveries_fts_au"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.execute("DROP TABLE IF EXISTS deliveries_fts")
    conn.execute(FTS_DDL)
    reindex_all(conn)
