"""Run a producer in a background thread and hand its items over in chunks.

Reading, parsing and tokenizing then overlap with inference (onnxruntime
releases the GIL), and chunks follow the input's pace: a fast input gives full
chunks (good batching), a slow one gives small chunks at once (first output
before the input ends).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def chunked_prefetch(items: Iterable[T], max_chunk: int, linger: float = 0.05) -> Iterator[list[T]]:
    """Chunks of up to ``max_chunk`` items; a chunk closes early when the input pauses ``linger`` s.

    Memory stays bounded: the producer runs at most two chunks ahead. An
    exception in the producer is raised here after the items before it.
    """
    q: queue.Queue = queue.Queue(maxsize=2 * max_chunk)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(_Failure(e))

    thread = threading.Thread(target=produce, name="embcli-reader", daemon=True)
    thread.start()
    try:
        end: object = None
        while end is None:
            first = q.get()
            if first is _DONE or isinstance(first, _Failure):
                end = first
                break
            chunk = [first]
            while len(chunk) < max_chunk:
                try:
                    item = q.get(timeout=linger)
                except queue.Empty:
                    break
                if item is _DONE or isinstance(item, _Failure):
                    end = item
                    break
                chunk.append(item)
            yield chunk
        if isinstance(end, _Failure):
            raise end.exc
    finally:
        stop.set()
