"""Schema 13-14: the delivery time stored as microseconds, read back as the text it always was.

What a user checks: an archive at main's schema (12: the time as text) migrates in place and reads exactly as
before (CSV bytes, detail, the list page by page, search, every dashboard number, alerts' inputs, rollups); a
migration killed with ``kill -9`` loses and doubles nothing, reads the same half done, and the next start finishes
it; a time MoeGo sends with or without fractional digits reads back as the writer always stored it; a range over
the integer selects exactly the rows the text range did, and the time indexes still serve every query.
"""

from __future__ import annotations

import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collectors import archive
from collectors.archive import compaction, status, when, writer
from collectors.archive.export import export_csv
from collectors.archive.filters import Filters
from collectors.models import format_timestamp, parse_timestamp
from dashboard import queries, stats

from tests.archive.test_compact_rows import KEYING_STEP, schema9_archive
from tests.archive.test_compaction import NOW, SECRET, SINCE, UNTIL, WORDS, copy, snapshot
from tests.collectors.conftest import assert_archive_consistent
from tests.seed import ALPHA, BETA, GAMMA, delivery

REPO = Path(__file__).resolve().parents[2]
#: Main's schema before this change: every row's time as text in delivered_at.
MAIN_SCHEMA = KEYING_STEP + 1
assert MAIN_SCHEMA == 12 and archive.schema.COMPACTION_STEP == MAIN_SCHEMA + 1  # the move of every time: the last compaction


def _csv(path: Path, secret: tuple[str, ...] = (), **filters) -> bytes:
    out = io.StringIO(newline="")
    with archive.open_archive(path, readonly=True) as conn:
        export_csv(conn, Filters(time_range="custom", since=SINCE, until=UNTIL, **filters), out, now=NOW,
                   secret_headers=secret)
    return out.getvalue().encode("utf-8")


def _pages(conn: sqlite3.Connection, filters: Filters, order: str) -> list[list[tuple]]:
    window = filters.window(NOW)
    pages, after = [], None
    while True:
        page = queries.delivery_page(conn, filters, window, after=after, order=order, limit=137)  # type: ignore[arg-type]
        pages.append([tuple(r) for r in page.rows.astype(str).itertuples(index=False)])
        if page.next is None or len(pages) > 200:
            return pages
        after = page.next


def reads(path: Path) -> dict:
    """Everything a reader of the archive sees: CSV bytes, details, pages, numbers, health, alerts' inputs."""
    out: dict = {"csv": _csv(path), "csv_secret": _csv(path, SECRET), "csv_beta": _csv(path, webhooks=(BETA,)),
                 **snapshot(path)}
    with archive.open_archive(path, readonly=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM deliveries ORDER BY id")]
        out["detail"] = {i: queries.delivery(conn, i) for i in ids[::41]}
        whole = Filters(time_range="custom", since=SINCE, until=UNTIL)
        window = whole.window(NOW)
        two = whole.with_changes(webhooks=(ALPHA, GAMMA))
        failed = whole.with_changes(outcome="failed")
        searched = whole.with_changes(search="deadline")
        for name, f in (("all", whole), ("two", two), ("failed", failed), ("search", searched)):
            out[f"newest_{name}"] = _pages(conn, f, "newest")
            out[f"oldest_{name}"] = _pages(conn, f, "oldest")
            out[f"count_{name}"] = str(queries.count_deliveries(conn, f, window))
        # A window with ragged edges: raw rows at both ends, the rollup in between.
        ragged = Filters(time_range="custom", since=SINCE + timedelta(minutes=17, microseconds=3),
                         until=UNTIL - timedelta(minutes=41))
        for name, f in (("ragged", ragged), ("whole", whole)):
            w = f.window(NOW)
            out[f"summary_{name}"] = repr(stats.summary(conn, f, w))
            out[f"by_hour_{name}"] = stats.aggregate(conn, f, w, grain="hour", dims=("webhook_id",)).to_csv()
            out[f"status_{name}"] = queries.failures_by_status(conn, f, w).to_csv()
            out[f"health_{name}"] = queries.webhook_health(conn, f, w).to_csv()
            out[f"tiles_{name}"] = repr(queries.tiles(conn, f, w, NOW))
        out["candidates"] = [repr(c) for c in queries.failed_candidates(conn, whole, window, limit=500)]
        out["attempts"] = queries.event_attempts(conn, "evt_000007").to_csv()
    return out


def _oldest_newest(path: Path) -> dict[str, tuple[str, str]]:
    """Per webhook, its oldest and newest delivery time as the text column says (schema 12)."""
    conn = sqlite3.connect(path)
    try:
        return {hook: (lo, hi) for hook, lo, hi in conn.execute(
            "SELECT webhook_id, MIN(delivered_at), MAX(delivered_at) FROM deliveries GROUP BY 1")}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def main_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An archive as main's schema 12 left it (every time as text), and what this version reads from it."""
    path = tmp_path_factory.mktemp("schema12") / "v12.db"
    legacy = schema9_archive(path)
    conn = archive.connect(path)
    archive.ensure_db_shape(conn, until=MAIN_SCHEMA)
    assert archive.schema_version(conn) == MAIN_SCHEMA
    assert "delivered_key" not in {r[1] for r in conn.execute("PRAGMA table_xinfo(deliveries)")}
    conn.close()
    before = reads(path)
    before["oldest_newest"] = _oldest_newest(path)
    # The CSV as the export before the payload column wrote it, byte for byte (tests/archive/legacy.py).
    assert before["csv"] == legacy["csv"] and before["csv_secret"] == legacy["csv_secret"]
    assert before["count_search"] not in ("0", "") and len(before["newest_all"]) > 5
    return path, before


def _assert_reads_as_before(path: Path, before: dict) -> None:
    now = reads(path)
    for key in now:
        assert now[key] == before[key], key


def _assert_status_as_before(path: Path, before: dict) -> None:
    """``moego-monitor status``'s oldest and newest entry per webhook (current schema only)."""
    with archive.open_archive(path) as conn, archive.transaction(conn):  # webhooks the collector has seen
        conn.executemany("INSERT OR IGNORE INTO sync_state (webhook_id) VALUES (?)", [(h,) for h in (ALPHA, BETA, GAMMA)])
    with archive.open_archive(path, readonly=True) as conn:
        shown = {w.webhook_id: (format_timestamp(w.oldest), format_timestamp(w.newest))
                 for w in status.archive_status(conn, NOW).webhooks if w.oldest and w.newest}
    assert shown == before["oldest_newest"]


def _time_columns(path: Path) -> tuple[int, int, int]:
    """Rows with their time as text, rows with it as an integer, rows in all."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT SUM(delivered_text != ''), SUM(delivered_text = '' AND delivered_us IS NOT NULL), "
                            "COUNT(*) FROM deliveries").fetchone()
    finally:
        conn.close()


def test_an_archive_of_main_schema_migrates_in_place_and_reads_as_before(main_archive, tmp_path: Path) -> None:
    path = copy(main_archive[0], tmp_path / "m.db")
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION
    indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' "
                                "AND sql IS NOT NULL").fetchall())
    conn.close()
    text, integer, total = _time_columns(path)
    assert (text, integer) == (0, total) and total > 6_000
    for name, _ in when.TIME_INDEXES:
        assert "delivered_key" in indexes[name] and "delivered_at" not in indexes[name], indexes[name]
    _assert_reads_as_before(path, main_archive[1])
    _assert_status_as_before(path, main_archive[1])
    assert_archive_consistent(path)


CHILD = """
import sys
from collectors import archive
from collectors.archive import when
conn = archive.connect(sys.argv[1])
archive.ensure_db_shape(conn, until=archive.schema.COMPACTION_STEP)
when.move_delivered(conn, batch=100, on_batch=lambda p: print(p.rowid, flush=True))
print("done", flush=True)
"""


def test_the_move_killed_with_sigkill_loses_and_doubles_nothing_reads_the_same_and_resumes(main_archive,
                                                                                           tmp_path: Path) -> None:
    path = copy(main_archive[0], tmp_path / "k.db")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    seen = [child.stdout.readline() for _ in range(6)]
    os.kill(child.pid, signal.SIGKILL)  # mid-batch
    child.wait(timeout=60)
    child.stdout.close()
    assert all(line.strip().isdigit() for line in seen), seen
    text, integer, total = _time_columns(path)
    assert integer >= 500 and text > 1_000 and text + integer == total, (text, integer, total)
    conn = archive.connect(path)
    assert archive.schema_version(conn) == archive.schema.COMPACTION_STEP
    assert compaction.note(conn) is not None
    conn.close()
    # Half done: readable, and it reads exactly as before.
    archive.check_readable(path)
    _assert_reads_as_before(path, main_archive[1])
    assert_archive_consistent(path)
    # The next start finishes it.
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION
    assert compaction.note(conn) is None
    conn.close()
    text, integer, total_after = _time_columns(path)
    assert (text, integer, total_after) == (0, total, total)
    _assert_reads_as_before(path, main_archive[1])
    _assert_status_as_before(path, main_archive[1])


def test_moego_times_with_and_without_fractional_digits_read_back_as_the_writer_stored_them(tmp_path: Path) -> None:
    served = ["2026-11-20T10:00:00Z", "2026-11-20T10:00:00.5Z", "2026-11-20T10:00:00.123456789Z",
              "2026-11-20T11:59:59.999999Z", "2026-11-20T12:30:00+02:00", "2026-11-20T00:00:00.000001Z",
              "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.25Z", "2038-01-19T03:14:08.000007Z", "9999-12-31T23:59:59Z"]
    conn = archive.connect(tmp_path / "t.db")
    archive.ensure_db_shape(conn)
    with archive.transaction(conn):
        writer.save_deliveries(conn, [delivery(f"dlv_t{i}", ALPHA, parse_timestamp(text))
                                      for i, text in enumerate(served)], seen_at=NOW)
    stored = dict(conn.execute("SELECT id, delivered_at FROM deliveries").fetchall())
    as_text = conn.execute("SELECT COUNT(*) FROM deliveries WHERE delivered_text != ''").fetchone()[0]
    # Ordered and ranged by the integer exactly as by the text.
    by_key = [r[0] for r in conn.execute("SELECT id FROM deliveries ORDER BY delivered_key, id")]
    conn.close()
    expected = {f"dlv_t{i}": format_timestamp(parse_timestamp(text)) for i, text in enumerate(served)}
    assert stored == expected
    assert stored["dlv_t0"] == "2026-11-20T10:00:00.000000Z" and stored["dlv_t2"] == "2026-11-20T10:00:00.123456Z"
    assert as_text == 1  # 1969: before the epoch, its text is kept as it is
    assert by_key == sorted(expected, key=lambda i: (expected[i], i))
    assert_archive_consistent(tmp_path / "t.db")


def test_a_range_over_the_integer_selects_exactly_the_rows_the_text_range_did() -> None:
    rng = random.Random(7)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (text TEXT, us INTEGER)")
    start = datetime(1999, 12, 31, 22, tzinfo=timezone.utc)
    times = [start + timedelta(microseconds=rng.randrange(10**13)) for _ in range(3_000)]
    times += [datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=timezone.utc), datetime(2024, 3, 1, tzinfo=timezone.utc)]
    rows = [(format_timestamp(t), when.stored_time(t, format_timestamp(t))[1]) for t in times]
    conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    # The SQL conversion and rendering agree with Python's, both ways.
    mismatched = conn.execute(
        f"SELECT COUNT(*) FROM t WHERE {when.TEXT_TO_US_SQL.format(t='text')} != us "
        f"OR {when.RENDER_SQL.format(us='us')} != text").fetchone()[0]
    assert mismatched == 0
    texts = sorted(r[0] for r in rows)
    bounds = [texts[rng.randrange(len(texts))] for _ in range(40)]
    bounds += [b[:n] for b in bounds[:20] for n in (4, 7, 10, 13, 16, 19, 22)]
    bounds += ["2000", "2000-01", "2000-01-01", "2000-01-01T00", "2024-02-29T23", "2024-03"]
    for lo in bounds[::3]:
        for hi in bounds[1::4]:
            by_text = conn.execute("SELECT COUNT(*) FROM t WHERE text >= ? AND text < ?", (lo, hi)).fetchone()[0]
            by_key = conn.execute("SELECT COUNT(*) FROM t WHERE us >= ? AND us < ?",
                                  (when.key_of(lo), when.key_of(hi))).fetchone()[0]
            assert by_key == by_text, (lo, hi)
    for hour in ("2000-01-01T00", "2024-02-29T23"):
        in_hour = conn.execute("SELECT COUNT(*) FROM t WHERE substr(text, 1, 13) = ?", (hour,)).fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM t WHERE us >= ? AND us < ?",
                            (when.key_of(hour), when.next_hour_key(hour))).fetchone()[0] == in_hour
    for bad in ("2026-1", "2026-11-01T1", "2026-13-01", "2026-02-30T00", "garbage", "2026-11-01 13"):
        with pytest.raises(ValueError):
            when.key_of(bad)


def test_the_archive_stays_readable_by_the_plain_sqlite3_shell(main_archive, tmp_path: Path) -> None:
    path = copy(main_archive[0], tmp_path / "s.db")
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    conn.close()
    shell = subprocess.run(["sqlite3", str(path), "SELECT delivered_at, delivered_key FROM deliveries "
                            "WHERE delivered_key >= 0 ORDER BY delivered_key LIMIT 1"],
                           capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    text, key = shell.stdout.strip().split("|")
    assert when.key_of(text) == int(key)
    conn = sqlite3.connect(path)
    assert text == conn.execute("SELECT delivered_at FROM deliveries ORDER BY delivered_at LIMIT 1").fetchone()[0]
    conn.close()


def test_every_time_range_query_walks_an_index_on_the_integer(main_archive, tmp_path: Path) -> None:
    path = copy(main_archive[0], tmp_path / "p.db")
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    since, until = when.key_of(format_timestamp(SINCE)), when.key_of(format_timestamp(UNTIL))
    plans = {
        "range": ("SELECT id FROM deliveries WHERE delivered_key >= ? AND delivered_key < ? ORDER BY delivered_key",
                  (since, until), "deliveries_by_time (delivered_key>? AND delivered_key<?)"),
        "webhook": ("SELECT id FROM deliveries WHERE webhook_id = ? AND delivered_key >= ? AND delivered_key < ? "
                    "ORDER BY delivered_key DESC", (ALPHA, since, until),
                    "deliveries_by_webhook_time (webhook_id=? AND delivered_key>? AND delivered_key<?)"),
        "failed": ("SELECT id FROM deliveries WHERE success = 0 AND delivered_key >= ? AND delivered_key < ?",
                   (since, until), "deliveries_failed_by_time (delivered_key>? AND delivered_key<?)"),
        "latest": ("SELECT delivered_at FROM deliveries WHERE webhook_id = ? AND success = ? AND delivered_key < ? "
                   "ORDER BY delivered_key DESC LIMIT 1", (GAMMA, 0, until),
                   "deliveries_by_webhook_outcome_time (webhook_id=? AND success=? AND delivered_key<?)"),
    }
    for name, (sql, params, expected) in plans.items():
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert expected in plan and "TEMP B-TREE" not in plan, (name, plan)
    conn.close()


def test_a_payload_keyed_with_the_text_time_decodes_with_the_integer_key_to_the_same_bytes(tmp_path: Path) -> None:
    """The export selects the time as ``delivered_key`` (codec.KEY_SELECT): the epoch milliseconds MoeGo puts in a
    payload (``X-Moe-Timestamp``) come back the same as from the text the writer keyed them with."""
    from collectors.archive import codec

    conn = archive.connect(tmp_path / "k.db")
    archive.ensure_db_shape(conn)
    coder = codec.Codec(conn)
    for text, ms in (("2026-10-31T23:17:54.998749Z", "1793488674998"), ("1970-01-01T00:00:00.000000Z", "0"),
                     ("1969-12-31T23:59:59.250000Z", "-750"), ("2026-11-20T12:00:00.000999Z", "1795176000000")):
        values = ["https://x.example/h", "1.2.3.4:443", '{"X-Moe-Timestamp":["' + ms + '"]}', f'{{"at":{ms}}}',
                  "{}", "ok", "CONTENT_TYPE_JSON", "CONTENT_TYPE_JSON"][:len(codec.PAYLOAD_FIELDS)]
        keys = ["dlv_1", "evt_1", ALPHA, "PET_UPDATED", text]
        blob = coder.encode(values, keys)
        with pytest.raises(ValueError):  # the time was keyed out of the payload: it needs the row's time back
            coder.decode(blob, keys[:4] + [""])
        assert list(coder.decode(blob, keys)) == values
        assert list(coder.decode(blob, keys[:4] + [when.key_of(text)])) == values, text
    conn.close()
