"""Read ahead of the writer: an iterator's next items fetched on threads while the caller works on this one.

:class:`Prefetched` wraps an iterator so that its next items are produced on a thread while the caller
handles the current one. It is bounded: at most ``depth`` items wait, so memory stays a few pages. An
exception the iterator raises is raised by ``next()`` at the position it happened, after the items before
it. :meth:`Prefetched.close` stops reading ahead (the thread finishes the request in flight, if any, and
closes the iterator on its own thread); it does not wait for that request.

:func:`prefetch_parsed` is what a sync uses (``MoeGoClient.iter_raw_delivery_pages``, then
``RawDeliveryPage.parsed``): two stages, fetching on one thread and parsing on another, so that the next
request leaves as soon as this answer is decoded instead of after its entries are parsed. A webhook's pages
are requested one after the other (MoeGo's page tokens), so the time between two requests is what bounds
its backfill; the network and MoeGo's time overlap with the parsing and with the archive's writes.
Nothing changes for the caller's guarantees: it still commits each page with its resume position, in
order; a page fetched ahead but not yet saved is simply fetched again after a crash.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Prefetched", "prefetch_parsed"]

S = TypeVar("S")
T = TypeVar("T")
_DONE = object()


class Prefetched(Generic[T]):
    """An iterator over ``source`` read ahead by a daemon thread, at most ``depth`` items ahead."""

    def __init__(self, source: Iterator[T], depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._ready: tuple | None = None  # an entry taken off the queue by wait(), handed out by the next next()
        self._thread = threading.Thread(target=self._run, args=(source,), name="moego-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless stopped; False once the consumer has gone."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put((item, None)):
                    break
            else:
                self._put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_DONE, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - cleanup after the consumer left; nobody is there to tell
                    pass

    def __iter__(self) -> "Prefetched[T]":
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        if self._ready is not None:
            (item, error), self._ready = self._ready, None
        else:
            item, error = self._queue.get()
        if item is _DONE:
            self._finished = True
            if error is not None:
                raise error
            raise StopIteration
        return item

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the next item (or the end) to be ready; whether it is."""
        if self._finished or self._ready is not None:
            return True
        try:
            self._ready = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return False
        return True

    def close(self) -> None:
        """Stop reading ahead; items not taken are dropped."""
        self._finished = True
        self._stop.set()


def prefetch_parsed(source: Iterator[S], parse: Callable[[S], T], depth: int = 2) -> Prefetched[T]:
    """``source`` read ahead on one thread and each item ``parse``d on a second: the caller gets the parsed items
    in order, and an exception of either stage at its position. At most ``depth + 1`` items wait (one fetched,
    one in the parser's hands, ``depth - 1`` parsed) besides the one being fetched. Closing the result stops
    both stages."""
    if depth < 2:
        raise ValueError("depth must be at least 2 (one item per stage)")
    fetched = Prefetched(source, 1)

    def parsed() -> Iterator[T]:
        try:
            for item in fetched:
                yield parse(item)
        finally:
            fetched.close()

    return Prefetched(parsed(), depth - 1)
