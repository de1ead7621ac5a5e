"""Read ahead of the writer: an iterator's next items fetched on a thread while the caller works on this one.

:class:`Prefetched` wraps a page iterator (``MoeGoClient.iter_raw_delivery_pages``) so that the next page is
requested from MoeGo while the caller parses and saves the current one: the network and MoeGo's time overlap
with the archive's. The reading thread only fetches and decodes; the caller parses the entries
(``RawDeliveryPage.parsed``): a webhook's pages are requested one after the other (MoeGo's page tokens), so
whatever the reading thread does between two requests is on the critical path. It is bounded: at most ``depth``
items wait, so memory stays a few pages. Nothing changes for the caller's guarantees: it still commits each page
with its resume position, in order; a page fetched ahead but not yet saved is simply fetched again after a crash.

An exception the iterator raises is raised by ``next()`` at the position it happened, after the items
before it. :meth:`Prefetched.close` stops reading ahead (the thread finishes the request in flight, if
any, and closes the iterator on its own thread); it does not wait for that request.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Prefetched"]

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

