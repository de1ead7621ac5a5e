"""Pages committed a few at a time (collectors.fanout.PageBatch / ArchiveWriter), on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from collectors import archive
from collectors.fanout import ArchiveWriter, BatchLost, PageBatch


@pytest.fixture
def db(tmp_path: Path):
    conn = archive.connect(tmp_path / "a.db")
    conn.execute("CREATE TABLE pages (n INTEGER PRIMARY KEY, position TEXT)")
    yield conn
    conn.close()


def committed(conn: sqlite3.Connection) -> list[int]:
    """What another connection (a reader: the dashboard) sees."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    with archive.open_archive(path, readonly=True) as reader:
        return [n for (n,) in reader.execute("SELECT n FROM pages ORDER BY n")]


def page(n: int):
    def save(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO pages (n, position) VALUES (?, ?)", (n, f"after {n}"))
        return n
    return save


def test_pages_are_committed_together_when_the_batch_is_full(db):
    batch = PageBatch(db, max_rows=3 * 500, max_age_s=3600)
    reported: list[int] = []

    for n in (1, 2):
        batch.save(page(n), rows=500, after_commit=reported.append)
    assert committed(db) == [] and reported == [] and batch.pending == 2  # saved, not visible, not reported yet

    batch.save(page(3), rows=500, after_commit=reported.append)  # full: committed
    assert committed(db) == [1, 2, 3] and reported == [1, 2, 3] and (batch.commits, batch.pending) == (1, 0)
    assert not db.in_transaction


def test_a_batch_older_than_its_age_is_committed_with_its_next_page(db):
    batch = PageBatch(db, max_rows=10**6, max_age_s=0)
    batch.save(page(1), rows=500)
    assert committed(db) == [1]  # max_age_s=0: every page on its own, as before batching


def test_flush_commits_what_is_pending_and_other_work_through_the_writer_sees_it(db):
    writer = ArchiveWriter(db, batch=PageBatch(db, max_rows=10**6, max_age_s=3600))
    writer.page(page(1), rows=500)
    writer.page(page(2), rows=500)
    assert committed(db) == []

    # Any other work (a sync's bookkeeping opens its own transaction) first commits the open batch.
    def bookkeeping(conn: sqlite3.Connection) -> None:
        with archive.transaction(conn):
            conn.execute("INSERT INTO pages (n, position) VALUES (100, 'bookkeeping')")

    writer(bookkeeping)
    assert committed(db) == [1, 2, 100]


def test_a_page_refused_before_writing_leaves_the_batch_as_it_was(db):
    batch = PageBatch(db, max_rows=10**6, max_age_s=3600)
    batch.save(page(1), rows=500)

    def refused(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT COUNT(*) FROM pages").fetchone()  # a contract check reads, then refuses the page
        raise ValueError("MoeGo's page breaks the contract")

    with pytest.raises(ValueError):
        batch.save(refused, rows=500)
    batch.save(page(2), rows=500)  # the sync of another webhook carries on in the same batch
    batch.flush()
    assert committed(db) == [1, 2]


def test_a_page_failing_halfway_loses_its_whole_batch_and_no_later_page_is_saved(db):
    batch = PageBatch(db, max_rows=10**6, max_age_s=3600)
    reported: list[int] = []
    batch.save(page(1), rows=500, after_commit=reported.append)

    def halfway(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO pages (n, position) VALUES (2, 'after 2')")
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError):
        batch.save(halfway, rows=500)
    # Page 1's rows and its position went with the batch: a later page of the same sync must not be committed
    # past them (its position would skip page 1), so every later page is refused.
    with pytest.raises(BatchLost, match="could not write a batch of pages .*disk is full"):
        batch.save(page(3), rows=500)
    batch.flush()
    assert committed(db) == [] and reported == [] and not db.in_transaction


def test_the_writer_commits_a_due_batch_while_its_workers_wait(db):
    writer = ArchiveWriter(db, batch=PageBatch(db, max_rows=10**6, max_age_s=0.05))
    saved = threading.Event()
    seen_while_waiting: list[list[int]] = []
    release = threading.Event()

    def worker() -> None:
        writer.page(page(1), rows=500)
        saved.set()
        release.wait(30)  # a worker waiting for MoeGo's next page

    thread = threading.Thread(target=worker)
    thread.start()

    def busy() -> bool:
        if saved.is_set() and not release.is_set():
            now = committed(db)
            if now:
                seen_while_waiting.append(now)
                release.set()
        return thread.is_alive()

    writer.serve(busy)
    thread.join()
    assert seen_while_waiting == [[1]]  # visible before the worker's next page came
