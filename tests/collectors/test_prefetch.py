"""Reading ahead of the writer: same items in the same order, never more than the depth ahead, errors in place."""

from __future__ import annotations

import threading
import time

import pytest

from collectors.prefetch import Prefetched, prefetch_parsed


def test_items_come_in_order_and_the_reader_stays_at_most_depth_ahead() -> None:
    produced: list[int] = []

    def pages():
        for i in range(20):
            produced.append(i)
            yield i

    reader = Prefetched(pages(), 2)
    taken = []
    for item in reader:
        time.sleep(0.005)  # the caller "saves" the page
        # Taken so far, plus at most 2 waiting, plus the one the thread holds while it waits for room.
        assert len(produced) <= len(taken) + 1 + 3
        taken.append(item)
    assert taken == list(range(20))


def test_an_error_is_raised_after_the_items_before_it() -> None:
    def pages():
        yield 1
        yield 2
        raise RuntimeError("MoeGo answered a malformed page")

    reader = Prefetched(pages(), 4)
    assert next(reader) == 1 and next(reader) == 2
    with pytest.raises(RuntimeError, match="malformed page"):
        next(reader)
    with pytest.raises(StopIteration):
        next(reader)


def test_close_stops_reading_ahead_and_closes_the_source_on_its_thread() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def pages():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    reader = Prefetched(pages(), 1)
    assert next(reader) == 0
    reader.close()
    assert closed.wait(5), "the source was not closed after close()"
    assert len(produced) <= 3
    with pytest.raises(StopIteration):
        next(reader)


# -- two stages: fetching on one thread, parsing on another ------------------------------------------------


def test_the_next_item_is_fetched_while_this_one_is_parsed() -> None:
    """The point of two stages: a page's request leaves while the page before it is still being parsed."""
    fetching = {i: threading.Event() for i in range(5)}
    overlapped: list[bool] = []

    def pages():
        for i in range(5):
            fetching[i].set()
            yield i

    def parse(i: int) -> str:
        if i + 1 < 5:
            overlapped.append(fetching[i + 1].wait(5))  # with one thread this could only time out
        return f"page {i}"

    assert list(prefetch_parsed(pages(), parse, depth=2)) == [f"page {i}" for i in range(5)]
    assert overlapped == [True] * 4


def test_two_stages_stay_within_their_bound_and_parse_on_their_own_threads() -> None:
    produced: list[int] = []
    threads: set[int] = set()

    def pages():
        for i in range(30):
            produced.append(i)
            threads.add(threading.get_ident())
            yield i

    def parse(i: int) -> int:
        threads.add(threading.get_ident())
        return i * 10

    taken = []
    for item in prefetch_parsed(pages(), parse, depth=2):
        time.sleep(0.005)  # the caller "saves" the page
        # Taken so far, plus at most 3 waiting (one fetched, one in the parser's hands, one parsed), plus the
        # one the fetching thread holds while it waits for room.
        assert len(produced) <= len(taken) + 1 + 4
        taken.append(item)
    assert taken == [i * 10 for i in range(30)]
    assert threading.get_ident() not in threads and len(threads) == 2


@pytest.mark.parametrize("stage", ["fetch", "parse"])
def test_an_error_of_either_stage_comes_after_the_items_before_it_and_closes_the_source(stage: str) -> None:
    closed = threading.Event()

    def pages():
        try:
            for i in range(100):
                if stage == "fetch" and i == 2:
                    raise RuntimeError("MoeGo did not answer page 3")
                yield i
        finally:
            closed.set()

    def parse(i: int) -> int:
        if stage == "parse" and i == 2:
            raise ValueError("page 3 is malformed")
        return i

    reader = prefetch_parsed(pages(), parse, depth=2)
    assert next(reader) == 0 and next(reader) == 1
    with pytest.raises((RuntimeError, ValueError), match="page 3"):
        next(reader)
    with pytest.raises(StopIteration):
        next(reader)
    assert closed.wait(5), "the source was not closed after the error"


def test_closing_two_stages_stops_both_and_closes_the_source() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def pages():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    reader = prefetch_parsed(pages(), lambda i: i, depth=2)
    assert next(reader) == 0
    reader.close()
    assert closed.wait(5), "the source was not closed after close()"
    assert len(produced) <= 6
    with pytest.raises(StopIteration):
        next(reader)
