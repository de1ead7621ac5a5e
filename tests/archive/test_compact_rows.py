"""Schema 10-11: payloads keyed to their row, seen times as integers, and the resumable migration of main's archives.

What a user checks: an archive written by the previous version (schema 9: payloads compressed without
keys, seen times as text) migrates in place and reads byte for byte as before (CSV, detail, search,
rollups, the seen times); a migration killed with ``kill -9`` loses and doubles nothing, reads the same
half done, and the next start finishes it; a new archive collected from the sandbox reads back every field
as the sandbox served it.
"""

from __future__ import annotations

import base64
import json
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
from collectors.archive import codec, compaction, search_index
from collectors.archive.writer import delivery_row
from collectors.collect import collect
from collectors.client import make_client
from collectors.models import format_timestamp
from collectors.redaction import REDACTED
from dashboard import queries
from tests.archive.legacy import legacy_archive, legacy_csv, varied_deliveries
from tests.archive.test_compaction import NOW, SECRET, SINCE, UNTIL, assert_reads_as_before, copy, snapshot
from tests.collectors.conftest import assert_archive_consistent, listed_ids, sandbox_now, sandbox_settings
from tests.conftest import running_sandbox
from tests.seed import ALPHA, BETA, GAMMA, delivery

REPO = Path(__file__).resolve().parents[2]
#: The schema version before the keying compaction (schema 11 -> 12): keying payloads pending.
KEYING_STEP = next(i for i, step in enumerate(archive.schema._MIGRATIONS)
                   if isinstance(step, archive.schema.Batched) and step.run is compaction.compact_rows)
MAIN_FTS_DDL = "CREATE VIRTUAL TABLE deliveries_fts USING fts5(request_body, response_body, error, content='')"
SCHEMA_9 = 9  # main's schema before this step: payloads without keys, seen times as text


def _with_base64_payloads(count: int) -> list:
    """Deliveries whose bodies carry a base64 payload (MoeGo's guide's shape), some in no canonical form."""
    out = []
    for i in range(count):
        inner = json.dumps({"customerId": str(1000 + i), "name": "naïve ✓"}).encode()
        encoded = base64.b64encode(inner).decode()
        if i % 3 == 1:
            encoded = encoded.rstrip("=")  # not canonical base64: kept as it is
        body = json.dumps({"id": f"evt_b{i}", "type": "CUSTOMER_UPDATED", "payload": encoded}).encode()
        out.append(delivery(f"dlv_b{i:05d}", GAMMA, NOW - timedelta(minutes=i), event_type="CUSTOMER_UPDATED",
                            event_id=f"evt_b{i}", request_body=body))
    return out


def schema9_archive(path: Path) -> dict[str, bytes]:
    """An archive as main's schema 9 left it: every payload compressed without keys, seen times as text.
    Returns its CSV exports as the code before the payload column wrote them (byte for byte the same since)."""
    deliveries = varied_deliveries(6_000, (ALPHA, BETA, GAMMA), NOW) + _with_base64_payloads(300)
    legacy_archive(path, deliveries, seen_at=NOW)
    conn = sqlite3.connect(path)
    exports = {"csv": legacy_csv(conn, format_timestamp(SINCE), format_timestamp(UNTIL)),
               "csv_secret": legacy_csv(conn, format_timestamp(SINCE), format_timestamp(UNTIL), SECRET)}
    conn.close()
    conn = archive.connect(path)
    archive.ensure_db_shape(conn, until=SCHEMA_9)
    coder = codec.Codec(conn)
    keys = ", ".join(codec.KEY_COLUMNS)
    rows = conn.execute(f"SELECT rowid, payload, {keys} FROM deliveries").fetchall()
    with archive.transaction(conn):
        # Its full-text index as main's schema made it: with per-row sizes (the migration rebuilds it without).
        conn.execute("DROP TABLE deliveries_fts")
        conn.execute(MAIN_FTS_DDL)
        search_index.reindex_all(conn)
        conn.executemany("UPDATE deliveries SET payload = ? WHERE rowid = ?",
                         [(coder.encode(coder.decode(blob, k)), rowid) for rowid, blob, *k in rows])
        # A later sighting of some rows: their last seen differs from their first.
        conn.execute("UPDATE deliveries SET last_seen_at = ? WHERE rowid % 5 = 0",
                     (format_timestamp(NOW + timedelta(hours=1, microseconds=7)),))
    assert archive.schema_version(conn) == SCHEMA_9
    assert "first_seen_at" in {r[1] for r in conn.execute("PRAGMA table_info(deliveries)")}
    conn.close()
    return exports


def fts_tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'deliveries_fts%'")}
    finally:
        conn.close()


def _seen(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, first_seen_at, last_seen_at FROM deliveries ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def main_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("schema9") / "v10.db"
    exports = schema9_archive(path)
    conn = sqlite3.connect(path)
    ids = [r[0] for r in conn.execute("SELECT id FROM deliveries ORDER BY id")]
    before = {
        **exports,
        "seen": _seen(path),
        **snapshot(path),
    }
    conn.close()
    # The detail view as the previous version read it (its payload decoded without keys).
    conn = archive.connect(path, readonly=True)
    before["detail"] = {i: queries.delivery(conn, i) for i in ids[::53] + [i for i in ids if i.startswith("dlv_b")][:30]}
    conn.close()
    assert before["csv"].count(b"\r\n") > 6_000
    assert_reads_as_before(path, before)  # the schema-10 archive itself, read by this version
    return path, before


def test_an_archive_of_the_previous_schema_migrates_in_place_and_reads_as_before(main_archive, tmp_path: Path) -> None:
    path = copy(main_archive[0], tmp_path / "m.db")
    before = main_archive[1]
    conn = archive.connect(path)
    size_before = conn.execute("SELECT SUM(length(payload)) FROM deliveries").fetchone()[0]
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION
    left = conn.execute("SELECT COUNT(*) FROM deliveries WHERE first_seen_text != '' OR last_seen_text != '' "
                        "OR seen_us IS NULL").fetchone()[0]
    size_after = conn.execute("SELECT SUM(length(payload)) FROM deliveries").fetchone()[0]
    differs = conn.execute("SELECT COUNT(*) FROM deliveries WHERE last_seen_us IS NOT NULL").fetchone()[0]
    conn.close()
    assert left == 0
    assert fts_tables(path) == {"deliveries_fts", "deliveries_fts_config", "deliveries_fts_data", "deliveries_fts_idx"}
    assert differs == sum(1 for _, first, last in before["seen"] if first != last) > 0
    assert size_after < size_before * 0.9, (size_after, size_before)
    assert _seen(path) == before["seen"]
    assert_reads_as_before(path, before)
    assert_archive_consistent(path)


CHILD = """
import sys
from collectors import archive
from collectors.archive import compaction

#: The schema version before the keying compaction (schema 11 -> 12): keying payloads pending.
KEYING_STEP = next(i for i, step in enumerate(archive.schema._MIGRATIONS)
                   if isinstance(step, archive.schema.Batched) and step.run is compaction.compact_rows)
conn = archive.connect(sys.argv[1])
archive.ensure_db_shape(conn, until=KEYING_STEP)
compaction.compact_rows(conn, batch=100, on_batch=lambda p: print(p.rowid, flush=True))
print("done", flush=True)
"""


def test_the_migration_killed_with_sigkill_loses_and_doubles_nothing_and_resumes(main_archive, tmp_path: Path) -> None:
    path = copy(main_archive[0], tmp_path / "k.db")
    before = main_archive[1]
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    seen = [child.stdout.readline() for _ in range(5)]
    os.kill(child.pid, signal.SIGKILL)  # mid-batch
    child.wait(timeout=60)
    child.stdout.close()
    assert all(line.strip().isdigit() for line in seen), seen
    conn = archive.connect(path)
    done, pending = conn.execute(
        "SELECT SUM(first_seen_text = '' AND seen_us IS NOT NULL), SUM(first_seen_text != '') FROM deliveries").fetchone()
    assert archive.schema_version(conn) == KEYING_STEP and done >= 500 and pending > 0, (done, pending)
    assert compaction.note(conn) is not None
    conn.close()
    assert "deliveries_fts_next" in fts_tables(path) and "deliveries_fts_docsize" in fts_tables(path)
    # Half done: readable, and it reads exactly as before.
    archive.check_readable(path)
    assert _seen(path) == before["seen"]
    assert_reads_as_before(path, before)
    # The next start finishes it (the keyed dictionary is not trained twice).
    conn = archive.connect(path)
    dicts = conn.execute("SELECT COUNT(*) FROM codec_dicts").fetchone()[0]
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM deliveries WHERE first_seen_text != ''").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM codec_dicts").fetchone()[0] == dicts
    assert compaction.note(conn) is None
    conn.close()
    assert fts_tables(path) == {"deliveries_fts", "deliveries_fts_config", "deliveries_fts_data", "deliveries_fts_idx"}
    assert _seen(path) == before["seen"]
    assert_reads_as_before(path, before)
    assert_archive_consistent(path)


def test_a_payload_decodes_to_its_exact_bytes_whatever_its_row_repeats() -> None:
    """Keys inside each other, empty keys, keys all over the payload, base64 of text and of bytes, non-canonical base64."""
    conn = sqlite3.connect(":memory:")
    conn.execute(codec.CODEC_DDL)
    coder = codec.Codec(conn)
    rng = random.Random(11)
    words = ["dlv_1", "dlv_12", "evt", "whk_a", "APPOINTMENT_CREATED", "1793488674998", "1793488674998749",
             "2026-10-31T23:17:54.998749Z", '"payload": "', '{"pet":"', '"', "\\", "é", "✓", "\r\n", ",", "{}", "=", "/+", ""]
    blobs = [base64.b64encode(b"x" * n).decode() for n in (12, 13, 14)] + [
        base64.b64encode(bytes(range(200, 230))).decode(), base64.b64encode("naïve".encode() * 5).decode()]
    for _ in range(3_000):
        keys = [rng.choice(words) for _ in range(4)] + [rng.choice(["2026-10-31T23:17:54.998749Z", "", "junk"])]
        values = ["".join(rng.choice(words + [f'"{rng.choice(blobs)}"', rng.choice(blobs)]) for _ in range(rng.randrange(12)))
                  for _ in codec.PAYLOAD_FIELDS]
        assert coder.decode(coder.encode(values, keys), keys) == values, (keys, values)
    # Without its keys, a keyed payload is refused rather than read wrong.
    keys = ["dlv_1", "evt_1", "whk_a", "X", "2026-10-31T23:17:54.998749Z"]
    with pytest.raises(ValueError):
        coder.decode(coder.encode(["dlv_1 evt_1"] + [""] * 7, keys))


def test_seen_times_render_back_as_the_text_they_were() -> None:
    conn = sqlite3.connect(":memory:")
    rng = random.Random(5)
    stamps = [datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)]
    stamps += [datetime.fromtimestamp(rng.randrange(0, 2**35), timezone.utc).replace(microsecond=rng.randrange(10**6))
               for _ in range(2_000)]
    render = compaction._RENDER.format(us="?")
    for at in stamps:
        us = compaction.seen_us(at)
        text = format_timestamp(at)
        assert compaction.seen_text(us) == text
        assert conn.execute(f"SELECT {render.replace('?', str(us))}").fetchone()[0] == text
        assert compaction._us_of(text) == us
    assert compaction._us_of("2026-11-01 00:00:00") is None


def test_a_new_archive_collected_from_the_sandbox_reads_back_every_field_as_served(tmp_path: Path) -> None:
    with running_sandbox("--history-days", "2") as sandbox:
        settings = sandbox_settings(sandbox, tmp_path / "fresh.db")
        result = collect(settings, now=sandbox_now(sandbox))
        assert result.ok, result.summary_lines
        with make_client(settings) as client:
            hooks = client.list_webhooks()
            served = [d for hook in hooks for d in client.list_deliveries(hook.id)]
        listed = listed_ids(sandbox)
    assert len(served) == sum(len(ids) for ids in listed.values()) > codec.TRAIN_AT
    conn = archive.connect(settings.db_path, readonly=True)
    assert conn.execute("SELECT COUNT(*) FROM codec_dicts").fetchone()[0] >= 1
    assert conn.execute("SELECT COUNT(*) FROM deliveries WHERE first_seen_text != '' OR seen_us IS NULL "
                        "OR payload IS NULL OR request_body != ''").fetchone()[0] == 0
    custom = {h.id: tuple(h.headers) for h in hooks}
    seen_texts = set()
    for d in served:
        got = queries.delivery(conn, d.id)
        assert got is not None, d.id
        expected = delivery_row(d, seen_at=NOW, secret_headers=custom.get(d.webhook_id, ()))
        for name in ("id", "webhook_id", "event_type", "event_id", "request_url", "delivered_to", "request_body",
                     "request_body_base64", "response_status", "response_body", "response_body_base64", "delivered_at",
                     "duration_ms", "error", "retry_count", "request_format", "response_format", "status_class",
                     "error_class"):
            assert got[name] == expected[name], (d.id, name)
        assert got["success"] is d.success
        body = base64.b64decode(got["request_body"]) if got["request_body_base64"] else got["request_body"].encode()
        assert body == d.request_body and got["delivered_at"] == format_timestamp(d.delivered_at)
        for headers, sent in ((got["request_headers"], d.request_headers), (got["response_headers"], d.response_headers)):
            assert set(headers) == set(sent), d.id
            for name, values in headers.items():
                assert values == sent[name] or values == [REDACTED] * len(sent[name]), (d.id, name)
        assert got["first_seen_at"] == got["last_seen_at"]
        seen_texts.add(got["first_seen_at"])
    assert all(len(t) == 27 and t.endswith("Z") for t in seen_texts)
    conn.close()


def test_canonical_headers_is_the_redacted_json_the_export_always_wrote() -> None:
    from collectors.redaction import redact_headers

    rng = random.Random(2)
    names = ["Authorization", "authorization", "X-Moe-Signature-256", "X-Custom-Token", "Cookie", "Content-Type",
             "x-api-key", "Set-Cookie", "X-Moe-Nonce", "Ünïcode", " Authorization"]
    for _ in range(2_000):
        headers = {rng.choice(names): [rng.choice(["v", "", "naïve ✓", 7, "[redacted]"]) for _ in range(rng.randrange(3))]
                   for _ in range(rng.randrange(6))}
        extra = rng.choice([(), ("x-custom-token",), (" X-CUSTOM-TOKEN ", "content-type")])
        expected = json.dumps(redact_headers({str(k): [str(v) for v in vs] for k, vs in headers.items()}, extra),
                              ensure_ascii=False, sort_keys=True)
        assert codec.canonical_headers(headers, extra) == expected


def test_canonical_headers_of_repeated_header_names_stays_the_reference_json() -> None:
    """The writer works out a set of names once (which are redacted, their order, their JSON keys) and reuses it for
    every delivery with the same names: the values and the extra secret names still decide the output, byte for
    byte the reference, including names and values that JSON escapes."""
    from collectors.redaction import redact_headers

    rng = random.Random(9)
    names = ["Authorization", "X-Moe-Signature-256", "X-Custom-Token", "Content-Type", 'Quo"te', "Tab\tBack\\slash",
             "\u2028Line", "Ünïcode", "\x00nul", "x-api-key", "Set-Cookie", "Z", "a"]
    values = ["v", "", "naïve ✓", 7, '"q"\n', "\x7f\u0001", "[REDACTED]", "𝄞"]
    name_sets = [tuple(rng.sample(names, rng.randrange(len(names)))) for _ in range(12)]
    for _ in range(5_000):
        chosen = rng.choice(name_sets)
        headers = {name: [rng.choice(values) for _ in range(rng.randrange(4))] for name in chosen}
        extra = rng.choice([(), ("x-custom-token",), ["Content-Type "], ("QUO\"TE", "z")])
        expected = json.dumps(redact_headers({k: [str(v) for v in vs] for k, vs in headers.items()}, extra),
                              ensure_ascii=False, sort_keys=True)
        assert codec.canonical_headers(headers, extra) == expected, (headers, extra)
    # Names that are not all text are taken as str() of them, as before (two may become one).
    assert codec.canonical_headers({1: ["a"], "1": ["b"]}) == json.dumps({"1": ["b"]}, ensure_ascii=False)


def test_two_migrations_of_the_same_archive_at_once_index_each_row_once(main_archive, tmp_path: Path) -> None:
    """A collect and a redelivery's re-sync may both start the migration: they take turns batch by batch. Here the
    second runs whole between two batches of the first, the worst interleaving; neither indexes a row twice."""
    path = copy(main_archive[0], tmp_path / "t.db")
    before = main_archive[1]
    first, second = archive.connect(path), archive.connect(path)
    archive.ensure_db_shape(first, until=KEYING_STEP)
    turns: list[int] = []

    def between_batches(progress: compaction.Progress) -> None:
        turns.append(progress.rowid)
        if len(turns) == 1:
            archive.ensure_db_shape(second)

    compaction.compact_rows(first, batch=500, on_batch=between_batches)
    archive.ensure_db_shape(first)
    assert archive.schema_version(first) == archive.SCHEMA_VERSION and len(turns) > 2
    hits = first.execute("SELECT rowid FROM deliveries_fts WHERE deliveries_fts MATCH '\"ok\"'").fetchall()
    first.close(), second.close()
    assert len(hits) == len(set(hits)) > 1_000
    assert fts_tables(path) == {"deliveries_fts", "deliveries_fts_config", "deliveries_fts_data", "deliveries_fts_idx"}
    assert _seen(path) == before["seen"]
    assert_reads_as_before(path, before)


def test_a_payload_keyed_by_the_delivery_times_integer_is_the_one_keyed_by_its_text() -> None:
    """The writer hands the codec the delivery time as the stored integer (microseconds), not its text: the payload
    bytes are the same (MoeGo's X-Moe-Timestamp in milliseconds stands for it either way)."""
    from collectors.archive import when
    from collectors.models import format_timestamp

    rng = random.Random(3)
    start = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for _ in range(3_000):
        at = start + timedelta(microseconds=rng.randrange(0, 4_000_000_000 * 10**6))
        text = format_timestamp(at)
        ms = str(int((at - start).total_seconds() * 1000)) if rng.random() < 0.5 else "1795831119854"
        values = ["https://h/x", "1.2.3.4", json.dumps({"X-Moe-Timestamp": [ms]}), f'{{"t":{ms},"id":"dlv_1"}}',
                  "{}", "ok", "JSON", "JSON"]
        keys = ("dlv_1", "evt_1", "whk_1", "PET_CREATED")
        us = when.stored_time(at, text)[1]
        assert codec._keyed(values, (*keys, us)) == codec._keyed(values, (*keys, text)), text
