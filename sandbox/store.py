"""Delivery log storage: compact rows in SQLite, keyset pages, retention.

One row per log entry. Seeded and generated rows hold only what the API cannot derive
(outcome, times, an event seed); their bodies and headers are synthesized on read
(:mod:`sandbox.synth`). Rows of deliveries the sandbox really sent also keep the recorded request
and response ("live details").

Order is newest first by ``(delivered_at DESC, key DESC)``; the public id is ``dlv_`` + the key in
16 lowercase hex digits, so ids sort like keys. All access happens on one thread (the event loop).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.model import Headers

__all__ = [
    "DeliveryRow",
    "LiveDetails",
    "DeliveryQuery",
    "DeliveryStore",
    "delivery_id",
    "parse_delivery_id",
    "MAX_KEY_BITS",
]

#: Keys are random 63-bit integers (SQLite integers are signed 64-bit).
MAX_KEY_BITS = 63
_ID_RE = re.compile(r"^dlv_([0-9a-f]{16})$")


def delivery_id(key: int) -> str:
    """The public id of the row with this key."""
    return f"dlv_{key:016x}"


def parse_delivery_id(text: str) -> int | None:
    """The key behind a public delivery id, or None if the text is not one."""
    m = _ID_RE.match(text)
    if not m:
        return None
    key = int(m.group(1), 16)
    return key if key < 2**MAX_KEY_BITS else None


@dataclass(slots=True)
class LiveDetails:
    """What was really sent and received for a delivery (absent for synthesized rows)."""

    event_id: str
    request_url: str
    delivered_to: str
    request_headers: Headers
    request_body: bytes
    response_headers: Headers
    response_body: bytes
    response_format: str


@dataclass(slots=True)
class DeliveryRow:
    """One log entry as stored; ``event_type`` is the enum number."""

    key: int
    webhook_idx: int
    event_type: int
    event_seed: int
    event_at: int
    delivered_at: int
    duration_ms: int
    status: int
    success: bool
    retry_count: int
    error: str
    live: LiveDetails | None = None


@dataclass(frozen=True)
class DeliveryQuery:
    """A ListWebhookDeliveries query: one webhook, a retention floor, optional filters."""

    webhook_idx: int
    not_before: int  # retention floor (inclusive), ns
    start: int | None = None  # deliveryTime.startTime, inclusive
    end: int | None = None  # deliveryTime.endTime, exclusive
    success: bool | None = None
    event_types: tuple[int, ...] | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    key INTEGER PRIMARY KEY,
    webhook INTEGER NOT NULL,
    event_type INTEGER NOT NULL,
    event_seed INTEGER NOT NULL,
    event_at INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    success INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    error TEXT,
    event_id TEXT,
    request_url TEXT,
    delivered_to TEXT,
    request_headers TEXT,
    request_body BLOB,
    response_headers TEXT,
    response_body BLOB,
    response_format TEXT
)
"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_deliveries_time ON deliveries (webhook, delivered_at)",
    "CREATE INDEX IF NOT EXISTS ix_deliveries_outcome ON deliveries (webhook, success, delivered_at)",
)
_COLUMNS = (
    "key, webhook, event_type, event_seed, event_at, delivered_at, duration_ms, status, success,"
    " retry_count, error, event_id, request_url, delivered_to, request_headers, request_body,"
    " response_headers, response_body, response_format"
)
#: The column order of :meth:`DeliveryStore.bulk_load` tuples.
COMPACT_COLUMNS = (
    "key, webhook, event_type, event_seed, event_at, delivered_at, duration_ms, status, success,"
    " retry_count, error"
)


def _row(v: tuple) -> DeliveryRow:
    """A row from a ``SELECT {_COLUMNS}`` tuple."""
    live = None
    if v[11] is not None:  # event_id: recorded details exist
        live = LiveDetails(
            event_id=v[11],
            request_url=v[12] or "",
            delivered_to=v[13] or "",
            request_headers=json.loads(v[14] or "{}"),
            request_body=bytes(v[15] or b""),
            response_headers=json.loads(v[16] or "{}"),
            response_body=bytes(v[17] or b""),
            response_format=v[18] or "",
        )
    key, webhook, event_type, seed, event_at, delivered_at, duration, status = v[:8]
    return DeliveryRow(
        key,
        webhook,
        event_type,
        seed,
        event_at,
        delivered_at,
        duration,
        status,
        bool(v[8]),
        v[9],
        v[10] or "",
        live,
    )


def _where(query: DeliveryQuery, after: tuple[int, int] | None) -> tuple[str, list[object]] | None:
    """The WHERE clause and parameters of a page query; None when nothing can match."""
    where = ["webhook = ?", "delivered_at >= ?"]
    params: list[object] = [query.webhook_idx, max(query.not_before, query.start or 0)]
    if query.end is not None:
        where.append("delivered_at < ?")
        params.append(query.end)
    if after is not None:
        where.append("(delivered_at, key) < (?, ?)")
        params.extend(after)
    if query.success is not None:
        where.append("success = ?")
        params.append(int(query.success))
    if query.event_types is not None:
        if not query.event_types:
            return None
        where.append(f"event_type IN ({','.join('?' * len(query.event_types))})")
        params.extend(query.event_types)
    return " AND ".join(where), params


class DeliveryStore:
    """The delivery log of every webhook, in one SQLite database (in memory by default)."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("PRAGMA temp_store = MEMORY")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Release the database."""
        self._db.close()

    # -- writes ---------------------------------------------------------------------------------
    def bulk_load(self, rows: Iterable[tuple], *, build_indexes: bool = True) -> int:
        """Insert compact rows (``COMPACT_COLUMNS`` order), dropping duplicate keys; returns how many.

        ``build_indexes`` creates missing indexes at the end, which is much faster than maintaining
        them row by row when rows come in random order. Rows that come in index order (seeded
        history) load faster with the indexes already in place; loads with indexes present just insert.
        """
        before = self.count()
        self._db.execute("BEGIN")
        self._db.executemany(
            f"INSERT OR IGNORE INTO deliveries ({COMPACT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
        )
        self._db.execute("COMMIT")
        if build_indexes:
            self.ensure_indexes()
        return self.count() - before

    def ensure_indexes(self) -> None:
        """Create the paging indexes where missing."""
        for statement in _INDEXES:
            self._db.execute(statement)

    def insert(self, row: DeliveryRow) -> bool:
        """Insert one row; False (and nothing written) if its key is taken."""
        live = row.live
        values = (
            row.key,
            row.webhook_idx,
            row.event_type,
            row.event_seed,
            row.event_at,
            row.delivered_at,
            row.duration_ms,
            row.status,
            int(row.success),
            row.retry_count,
            row.error or None,
            live.event_id if live else None,
            live.request_url if live else None,
            live.delivered_to if live else None,
            json.dumps(live.request_headers) if live else None,
            live.request_body if live else None,
            json.dumps(live.response_headers) if live else None,
            live.response_body if live else None,
            live.response_format if live else None,
        )
        try:
            self._db.execute(f"INSERT INTO deliveries ({_COLUMNS}) VALUES ({','.join('?' * 19)})", values)
        except sqlite3.IntegrityError:
            return False
        return True

    def update_outcome(self, row: DeliveryRow) -> None:
        """Rewrite the outcome of an existing row (a retry): everything but key, times and event."""
        live = row.live
        self._db.execute(
            "UPDATE deliveries SET duration_ms=?, status=?, success=?, retry_count=?, error=?,"
            " delivered_to=?, request_headers=?, response_headers=?, response_body=?, response_format=?"
            " WHERE key=?",
            (
                row.duration_ms,
                row.status,
                int(row.success),
                row.retry_count,
                row.error or None,
                live.delivered_to if live else None,
                json.dumps(live.request_headers) if live else None,
                json.dumps(live.response_headers) if live else None,
                live.response_body if live else None,
                live.response_format if live else None,
                row.key,
            ),
        )

    def has_key(self, key: int) -> bool:
        """True if a row with this key exists."""
        return self._db.execute("SELECT 1 FROM deliveries WHERE key=?", (key,)).fetchone() is not None

    def purge(self, before_ns: int, webhook_idxs: Iterable[int]) -> int:
        """Delete rows delivered before ``before_ns`` (retention); returns how many."""
        removed = 0
        for idx in webhook_idxs:
            cur = self._db.execute(
                "DELETE FROM deliveries WHERE webhook=? AND delivered_at<?", (idx, before_ns)
            )
            removed += cur.rowcount
        return removed

    def delete_webhook(self, idx: int) -> int:
        """Delete every row of a webhook; returns how many."""
        return self._db.execute("DELETE FROM deliveries WHERE webhook=?", (idx,)).rowcount

    # -- reads ----------------------------------------------------------------------------------
    def get(self, key: int) -> DeliveryRow | None:
        """The row with this key, or None."""
        values = self._db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE key=?", (key,)).fetchone()
        return _row(values) if values else None

    def page(self, query: DeliveryQuery, after: tuple[int, int] | None, limit: int) -> list[DeliveryRow]:
        """Up to ``limit`` rows matching ``query``, newest first, strictly after keyset ``after``."""
        clause = _where(query, after)
        if clause is None:
            return []
        where, params = clause
        sql = f"SELECT {_COLUMNS} FROM deliveries WHERE {where} ORDER BY delivered_at DESC, key DESC LIMIT ?"
        return [_row(v) for v in self._db.execute(sql, [*params, limit])]

    def explain(self, query: DeliveryQuery, after: tuple[int, int] | None) -> list[str]:
        """The query plan of :meth:`page` (to check that an index serves it, with no sorting)."""
        clause = _where(query, after)
        if clause is None:
            return []
        where, params = clause
        sql = f"SELECT key FROM deliveries WHERE {where} ORDER BY delivered_at DESC, key DESC LIMIT 1"
        return [r[-1] for r in self._db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    def count(self) -> int:
        """How many rows there are."""
        return self._db.execute("SELECT count(*) FROM deliveries").fetchone()[0]

    def counts(self, not_before: int) -> dict[int, tuple[int, int]]:
        """``{webhook idx: (entries, failed entries)}`` for rows at or after ``not_before``."""
        rows = self._db.execute(
            "SELECT webhook, count(*), sum(success = 0) FROM deliveries"
            " WHERE delivered_at >= ? GROUP BY webhook",
            (not_before,),
        )
        return {idx: (total, failed or 0) for idx, total, failed in rows}
