"""A delivery's time as stored: microseconds since the epoch, read back as the text it always was.

From schema 13 on, ``deliveries`` keeps ``delivered_at`` in an integer ``delivered_us`` (8 bytes instead of
27 in the row and in each of the four time indexes). Three columns say it:

- ``delivered_text``: the text column of older archives, renamed; it keeps a row's time until the last
  migration (:func:`move_delivered`) moves it into ``delivered_us``, and is ``''`` after (and for every
  row the writer writes). A time that would not render back as exactly its text keeps its text.
- ``delivered_key`` (VIRTUAL, generated): the microseconds, from ``delivered_us`` or, for a row not moved
  yet, computed from its text by :data:`TEXT_TO_US_SQL`. Every index on the time is on it, so a range, an
  ``ORDER BY`` or a keyset compares integers, and is right for moved and unmoved rows alike.
- ``delivered_at`` (VIRTUAL, generated): the same fixed-width RFC 3339 text as before
  (``2026-10-02T00:00:00.000000Z``), so everything that *returns* the time (detail, lists, CSV, alerts)
  is unchanged, byte for byte.

Queries compare ``delivered_key`` with integer parameters made by :func:`key_of`, the one place an
archive timestamp (or a prefix of one, such as an hour ``2026-11-01T13``) becomes microseconds. Only
deterministic built-ins are used, so the plain ``sqlite3`` shell reads the archive too.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .compaction import Progress

__all__ = ["TEXT_TO_US_SQL", "RENDER_SQL", "DELIVERED_DDL", "TIME_INDEXES", "PENDING_SQL", "BEFORE_ALL", "key_of",
           "key_after", "next_hour_key", "stored_time", "move_delivered", "read_older"]

#: An archive text time (fixed width, microseconds) as microseconds since the epoch, in SQL (``{t}``: the text).
TEXT_TO_US_SQL = ("(CAST(strftime('%s', substr({t}, 1, 19)) AS INTEGER) * 1000000 "
                  "+ CAST(substr({t}, 21, 6) AS INTEGER))")
#: Microseconds (``{us}``, not negative) as the archive's text time, in SQL.
RENDER_SQL = "(strftime('%Y-%m-%dT%H:%M:%S', {us} / 1000000, 'unixepoch') || printf('.%06dZ', {us} % 1000000))"

#: Schema 12 -> 13: the text column renamed, the integer beside it, both read through generated columns.
DELIVERED_DDL = f"""
ALTER TABLE deliveries RENAME COLUMN delivered_at TO delivered_text;
-- Microseconds since the epoch; NULL while delivered_text holds the time.
ALTER TABLE deliveries ADD COLUMN delivered_us INTEGER;
ALTER TABLE deliveries ADD COLUMN delivered_key INTEGER GENERATED ALWAYS AS (
    COALESCE(delivered_us, {TEXT_TO_US_SQL.format(t="delivered_text")})) VIRTUAL;
ALTER TABLE deliveries ADD COLUMN delivered_at TEXT GENERATED ALWAYS AS (
    CASE WHEN delivered_text != '' THEN delivered_text ELSE {RENDER_SQL.format(us="delivered_us")} END) VIRTUAL;
"""

#: The time indexes, by name, as they are from schema 13 on (before it, the same names on ``delivered_at``).
TIME_INDEXES: tuple[tuple[str, str], ...] = (
    ("deliveries_by_time", "CREATE INDEX deliveries_by_time ON deliveries (delivered_key)"),
    ("deliveries_by_webhook_time", "CREATE INDEX deliveries_by_webhook_time ON deliveries (webhook_id, delivered_key)"),
    ("deliveries_failed_by_time",
     "CREATE INDEX deliveries_failed_by_time ON deliveries (delivered_key) WHERE success = 0"),
    ("deliveries_by_webhook_outcome_time",
     "CREATE INDEX deliveries_by_webhook_outcome_time ON deliveries (webhook_id, success, delivered_key)"),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_FLOOR = "0000-01-01T00:00:00.000000Z"
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z")
#: Where a prefix of an archive timestamp may end: after a field (``2026``, ``2026-11-01T13`` ...) or in the fraction.
_PREFIX_ENDS = frozenset({4, 7, 10, 13, 16, 19, *range(20, 28)})
#: Rows moved per committed transaction by :func:`move_delivered`.
BATCH = 2_000


def key_of(stamp: str) -> int:
    """The ``delivered_key`` of an archive timestamp, or of the earliest time starting with a prefix of one.

    ``delivered_key >= key_of(s)`` selects exactly the rows whose text ``delivered_at >= s``, and ``<`` the
    rows with ``delivered_at < s``, for a full timestamp (``2026-11-01T13:05:00.000000Z``) or a prefix ending
    after a field (``2026-11-01T13``: 13:00:00.000000). Raises ``ValueError`` for anything else.
    """
    if len(stamp) not in _PREFIX_ENDS:
        raise ValueError(f"not an archive timestamp or a prefix of one: {stamp[:40]!r}")
    full = stamp + _FLOOR[len(stamp):]
    if len(stamp) in (4, 7):  # a year or a month: its first day ('00' days and months sort before any)
        full = stamp + "-01-01T00:00:00.000000Z"[len(stamp) - 4:]
    match = _STAMP.fullmatch(full)
    if match is None:
        raise ValueError(f"not an archive timestamp or a prefix of one: {stamp[:40]!r}")
    year, month, day, hour, minute, second, micros = (int(g) for g in match.groups())
    try:
        days = date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError:
        raise ValueError(f"not an archive timestamp or a prefix of one: {stamp[:40]!r}") from None
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not an archive timestamp or a prefix of one: {stamp[:40]!r}")
    return (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000 + micros


#: A key below every row's (where the text compared with ``''``: "after nothing").
BEFORE_ALL = -(2**63)


def key_after(stamp: str | None) -> int:
    """:func:`key_of`, with ``None`` or ``''`` (no lower bound) as :data:`BEFORE_ALL`."""
    return key_of(stamp) if stamp else BEFORE_ALL


def next_hour_key(hour: str) -> int:
    """The key of the first microsecond after the hour ``YYYY-MM-DDTHH``: ``[key_of(hour), next_hour_key(hour))``
    holds exactly that hour's rows."""
    if len(hour) != 13:
        raise ValueError(f"not an hour: {hour[:40]!r}")
    return key_of(hour) + 3_600_000_000


def stored_time(at: datetime, text: str) -> tuple[str, int | None]:
    """``(delivered_text, delivered_us)`` as the writer stores a delivery time (``text``: its archive text):
    ``('', us)``, or the text itself when the integer would not render back as it (before 1970)."""
    since = at - _EPOCH
    us = (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds  # per row: no timedelta division
    return ("", us) if us >= 0 else (text, None)


def read_older(conn: sqlite3.Connection) -> None:
    """On a read-only connection to an archive from before schema 13 (one the collector is still compacting),
    a temporary view ``deliveries`` over the table with its ``delivered_key`` computed from the text, so the
    same queries read it (with ``rowid``, for the full-text joins). Its time ranges scan rather than seek (the
    old indexes are on the text): that lasts until the collector's next start migrates the archive.
    Nothing is written to the archive; on a current archive this does nothing."""
    columns = {row[1] for row in conn.execute("PRAGMA main.table_xinfo(deliveries)")}
    if not columns or "delivered_key" in columns:
        return
    conn.execute("CREATE TEMP VIEW IF NOT EXISTS deliveries AS SELECT rowid AS rowid, *, "
                 f"{TEXT_TO_US_SQL.format(t='delivered_at')} AS delivered_key FROM main.deliveries")


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


#: A row whose time :func:`move_delivered` has not moved yet (progress reports).
PENDING_SQL = "delivered_text != '' AND delivered_us IS NULL"


_MOVE = (
    "UPDATE deliveries SET delivered_us = delivered_key, delivered_text = '' "
    "WHERE rowid > ? AND rowid <= ? AND delivered_text != '' AND delivered_key >= 0 "
    f"AND {RENDER_SQL.format(us='delivered_key')} = delivered_text"
)


def move_delivered(conn: sqlite3.Connection, *, batch: int = BATCH, vacuum: bool = True,
                   on_batch: "Callable[[Progress], None] | None" = None) -> int:
    """Schema 13 -> 14: the time indexes rebuilt on ``delivered_key``, then every row's text time moved into
    ``delivered_us``, ``batch`` rows per committed transaction, then ``VACUUM``. Returns the rows moved.

    Each index is dropped and created again under its name in one transaction (a reader sees the old or the
    new one, never none). A row is moved whole in one batch; killed at any point, the next run carries on (an
    index already on ``delivered_key`` is kept, a moved row has an empty text). The archive reads the same
    throughout: ``delivered_key`` and ``delivered_at`` are right for moved and unmoved rows alike. Call
    outside a transaction. ``on_batch`` is told the :class:`~collectors.archive.compaction.Progress`. An archive
    with planner statistics (``ANALYZE``: the benchmark's) gets them again for the rebuilt indexes.
    """
    from .compaction import Progress  # noqa: F811 (compaction imports this module for its progress report)

    for name, sql in TIME_INDEXES:
        with _write(conn):
            found = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
            if found is not None and "delivered_key" in found[0]:
                continue
            conn.execute(f"DROP INDEX IF EXISTS {name}")
            conn.execute(sql)
    last_rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    after, done = 0, 0
    while True:
        with _write(conn):
            end = conn.execute("SELECT MAX(rowid) FROM (SELECT rowid FROM deliveries WHERE rowid > ? "
                               "ORDER BY rowid LIMIT ?)", (after, batch)).fetchone()[0]
            if end is None:
                break
            done += conn.execute(_MOVE, (after, end)).rowcount
        after = end
        if on_batch:
            on_batch(Progress(after, last_rowid))
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() and conn.execute(
            "SELECT 1 FROM sqlite_stat1 WHERE tbl = 'deliveries' LIMIT 1").fetchone():
        for name, _ in TIME_INDEXES:
            if not conn.execute("SELECT 1 FROM sqlite_stat1 WHERE idx = ?", (name,)).fetchone():
                conn.execute(f"ANALYZE {name}")
    if vacuum and done:
        conn.execute("VACUUM")
    return done
