"""The full-text index the writer feeds: words inside base64 payloads are found, plain bodies search as before,
existing archives migrate forward and are re-indexed, and updates leave no stale words behind."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collectors import archive
from collectors.archive import schema
from collectors.archive import writer as store
from tests.seed import delivery

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
WORDS = ("Lovelace", "appointmentId", "Biscuit", "Groom", "timeout", "received", "APPOINTMENT_CREATED", "dlv_s03",
         "PET_CREATED", "aGVsbG8gd29ybGQ")
PET_B64 = "eyJuYW1lIjoiQmlzY3VpdCIsImJyZWVkIjoiR29sZGVuZG9vZGxlIn0"


def b64(value: object) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def deliveries():
    bodies = [
        {"id": "evt_1", "type": "APPOINTMENT_CREATED", "payload": {"appointmentId": "1", "service": "Full Groom"}},
        {"id": "evt_2", "type": "CUSTOMER_CREATED", "customer": {"id": "2", "lastName": "Lovelace"}},
        {"id": "evt_3", "type": "PET_CREATED", "pet": b64({"name": "Biscuit", "breed": "Goldendoodle"})},
        {"id": "evt_4", "type": "HEALTH_CHECK", "payload": "aGVsbG8gd29ybGQ="},  # base64 of text, not JSON
    ]
    out = [delivery(f"dlv_s{i:02d}", "wh_alpha", NOW - timedelta(minutes=i), request_body=json.dumps(b).encode())
           for i, b in enumerate(bodies, 1)]
    out.append(delivery("dlv_s05", "wh_alpha", NOW - timedelta(minutes=5), success=False, status=0,
                        error="context deadline exceeded (timeout)", request_body=b"\xff\xfe not utf-8"))
    return out


def matches(conn: sqlite3.Connection, word: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT id FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries_fts WHERE deliveries_fts MATCH ?)",
        (f'"{word}"',))}


def schema_one_archive(path: Path) -> None:
    """An archive as schema 1 wrote it: the trigger-fed index over the raw columns."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in schema._split_sql(schema._MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    rows = [store.delivery_row(d, seen_at=NOW) for d in deliveries()]
    columns = list(rows[0])
    conn.executemany(f"INSERT INTO deliveries ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                     [[r[c] for c in columns] for r in rows])
    conn.close()


def test_a_schema_one_archive_migrates_and_searches_the_same_plus_decoded_payloads(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    schema_one_archive(path)
    before = sqlite3.connect(path)
    found_before = {word: matches(before, word) for word in WORDS}
    before.close()
    assert found_before["Biscuit"] == set()  # schema 1 indexed the raw text: the base64 payload hid the name
    assert matches(sqlite3.connect(path), PET_B64) == {"dlv_s03"}

    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    assert archive.schema_version(conn) == archive.SCHEMA_VERSION >= 2  # 2 added the index; later migrations keep it
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall() == []
    found_after = {word: matches(conn, word) for word in WORDS}
    assert found_after["Biscuit"] == {"dlv_s03"} and matches(conn, "Goldendoodle") == {"dlv_s03"}
    assert {w: ids for w, ids in found_after.items() if w != "Biscuit"} == {
        w: ids for w, ids in found_before.items() if w != "Biscuit"}  # everything else: exactly as before
    assert found_after["Lovelace"] == {"dlv_s02"} and found_after["timeout"] == {"dlv_s05"}
    assert matches(conn, "hello") == set()  # base64 of text that is not JSON stays as logged
    assert matches(conn, PET_B64) == set()  # a decoded payload is indexed as its JSON, not as base64 fragments
    conn.execute("INSERT INTO deliveries_fts (deliveries_fts) VALUES ('integrity-check')")
    conn.close()


def test_the_writer_indexes_new_rows_and_reindexes_changed_ones(tmp_path: Path) -> None:
    db = archive.connect(tmp_path / "a.db")
    archive.ensure_db_shape(db)
    with archive.transaction(db):
        store.save_deliveries(db, deliveries(), seen_at=NOW)
    assert matches(db, "Goldendoodle") == {"dlv_s03"} and matches(db, "timeout") == {"dlv_s05"}

    later = delivery("dlv_s05", "wh_alpha", NOW - timedelta(minutes=5), success=False, status=503,
                     error="unexpected status 503", request_body=b"\xff\xfe not utf-8")
    retried = delivery("dlv_s03", "wh_alpha", NOW - timedelta(minutes=3), success=False, status=502,
                       error="bad gateway", request_body=deliveries()[2].request_body)
    with archive.transaction(db):
        result = store.save_deliveries(db, [later, retried], seen_at=NOW + timedelta(minutes=1))
    assert (result.new, result.updated) == (0, 2)
    assert matches(db, "timeout") == set()  # the old error's words are gone from the index
    assert matches(db, "unexpected") == {"dlv_s05"} and matches(db, "gateway") == {"dlv_s03"}
    assert matches(db, "Goldendoodle") == {"dlv_s03"}  # the decoded payload is still indexed, once
    db.execute("INSERT INTO deliveries_fts (deliveries_fts) VALUES ('integrity-check')")
    # The index stores no copy of any body: a contentless table has no content table of its own.
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'deliveries_fts%'")}
    assert "deliveries_fts_content" not in names
    db.close()


def test_unindex_removes_exactly_the_rows_about_to_be_deleted(tmp_path: Path) -> None:
    from collectors.archive import search_index

    db = archive.connect(tmp_path / "a.db")
    archive.ensure_db_shape(db)
    with archive.transaction(db):
        store.save_deliveries(db, deliveries(), seen_at=NOW)
    with archive.transaction(db) as conn:
        assert search_index.unindex(conn, "id IN (?, ?)", ("dlv_s03", "dlv_s05")) == 2
        conn.execute("DELETE FROM deliveries WHERE id IN ('dlv_s03', 'dlv_s05')")
    assert matches(db, "Goldendoodle") == set() and matches(db, "timeout") == set()
    assert matches(db, "Lovelace") == {"dlv_s02"} and matches(db, "ok") == {"dlv_s01", "dlv_s02", "dlv_s04"}
    db.execute("INSERT INTO deliveries_fts (deliveries_fts) VALUES ('integrity-check')")
    db.close()


def test_new_rows_get_the_rowids_sqlite_would_give_and_the_index_finds_them_by_those(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """The writer gives new rows their rowids itself (so the index needs no lookup after the insert): the same ones
    SQLite gives when it picks them (the writer's fallback past the largest rowid), also after the newest row was
    deleted; every row is found by a word of its own, and saving the pages again changes nothing."""
    from collectors.archive import search_index

    written = archive.connect(tmp_path / "writer.db")
    plain = archive.connect(tmp_path / "plain.db")
    for conn in (written, plain):
        archive.ensure_db_shape(conn)
    pages = [[delivery(f"dlv_p{p}_{i}", "wh_alpha", NOW - timedelta(minutes=p * 10 + i),
                       request_body=json.dumps({"note": f"word{p}x{i}"}).encode()) for i in range(7)]
             for p in range(4)]
    for number, page in enumerate(pages):
        if number == 2:  # the newest row goes: SQLite then hands its rowid out again
            for conn in (written, plain):
                with archive.transaction(conn):
                    search_index.unindex(conn, "id = ?", ("dlv_p1_6",))
                    conn.execute("DELETE FROM deliveries WHERE id = 'dlv_p1_6'")
        with archive.transaction(written):
            assert store.save_deliveries(written, page, seen_at=NOW) == store.SaveResult(new=7)
        with monkeypatch.context() as patch, archive.transaction(plain):
            patch.setattr(store, "_MAX_ROWID", 0)  # SQLite picks the rowids, the writer asks which
            assert store.save_deliveries(plain, page, seen_at=NOW) == store.SaveResult(new=7)
    expected = plain.execute("SELECT id, rowid FROM deliveries ORDER BY rowid").fetchall()
    assert written.execute("SELECT id, rowid FROM deliveries ORDER BY rowid").fetchall() == expected
    assert ("dlv_p2_0", 14) in expected and len(expected) == 27  # the deleted row's rowid 14 was given again
    for conn in (written, plain):
        for p, page in enumerate(pages):
            for i, d in enumerate(page):
                assert matches(conn, f"word{p}x{i}") == ({d.id} if d.id != "dlv_p1_6" else set())
        conn.execute("INSERT INTO deliveries_fts (deliveries_fts) VALUES ('integrity-check')")
    for page in pages:  # the same pages again: nothing new but the deleted row, nothing updated
        with archive.transaction(written):
            again = store.save_deliveries(written, page, seen_at=NOW + timedelta(minutes=1))
        assert again == store.SaveResult(new=int(page is pages[1]), updated=0)
    assert written.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 28
    assert matches(written, "word1x6") == {"dlv_p1_6"}
    written.execute("INSERT INTO deliveries_fts (deliveries_fts) VALUES ('integrity-check')")
