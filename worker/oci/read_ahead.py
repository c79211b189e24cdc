"""Read a download ahead of its upload: a thread pulls the source while the caller sends.

A blob that comes from the network (Hub, Ollama, a registry) is uploaded while it downloads.
Read in the same thread, the two alternate: while a piece goes to the registry, nothing is
received, and the other way round. ``ReadAhead`` runs the source in a thread of its own and
hands its pieces over through a buffer bounded in bytes, so the download goes on while the
upload sends, and memory stays at that bound plus the piece in each hand.

The source is only ever touched by the reading thread (a generator cannot be closed from
another thread while it runs). ``close`` asks the thread to stop: it does at its next piece,
closes the source and ends; a read blocked in the network ends with the source's own timeout.
A failure of the source is handed over in order, after the pieces read before it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Iterator

_END = object()


class ReadAhead:
    """An iterator over ``source``'s pieces, read by a thread at most ``limit`` bytes ahead."""

    def __init__(self, source: Iterable[bytes], limit: int, name: str = "read-ahead") -> None:
        self._limit = limit
        self._ready: collections.deque[bytes | BaseException | object] = collections.deque()
        self._held = 0
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(source,), name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self._changed:
            while not self._ready:
                self._changed.wait()
            item = self._ready[0]
            if item is _END:
                raise StopIteration
            self._ready.popleft()
            if isinstance(item, BaseException):
                self._ready.appendleft(_END)  # nothing follows a failure
                raise item
            assert isinstance(item, bytes)
            self._held -= len(item)
            self._changed.notify_all()
            return item

    def close(self) -> None:
        """Stops the reading thread at its next piece and drops what it read ahead."""
        with self._changed:
            self._closed = True
            self._ready.clear()
            self._ready.append(_END)
            self._held = 0
            self._changed.notify_all()

    def _read(self, source: Iterable[bytes]) -> None:
        iterator = iter(source)
        try:
            for piece in iterator:
                if not self._hand_over(piece, len(piece)):
                    return
            self._hand_over(_END, 0)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, in order
            self._hand_over(error, 0)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _hand_over(self, item: bytes | BaseException | object, size: int) -> bool:
        """Waits for room (one piece always fits), then queues ``item``; False once closed."""
        with self._changed:
            while not self._closed and self._held and self._held + size > self._limit:
                self._changed.wait()
            if self._closed:
                return False
            self._ready.append(item)
            self._held += size
            self._changed.notify_all()
            return True
