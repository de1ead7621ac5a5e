"""Reading ahead of the writer: same items in the same order, never more than the depth ahead, errors in place."""

from __future__ import annotations

import threading
import time

import pytest

from collectors.prefetch import Prefetched


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

