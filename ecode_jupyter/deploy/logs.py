"""An app's log: a bounded ring buffer of numbered lines that listeners can follow live.

Lines are numbered from 1 for the life of a deployment (across restarts), so a client that
reconnects with ``after=N`` gets every line after N still in the buffer exactly once, then
live ones. A listener that falls too far behind is dropped rather than slowing the app.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE_CHARS = 8192
_QUEUE_LINES = 1000


@dataclass(frozen=True)
class LogLine:
    seq: int
    ts: float
    stream: str  # "out": the app's stdout/stderr; "system": what the supervisor did
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "stream": self.stream, "text": self.text}


class _Closed:
    pass


_CLOSED = _Closed()


class _Listener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[LogLine | _Closed] = asyncio.Queue(_QUEUE_LINES)
        # Set when the reader fell too far behind: it gets what is queued, then ends (and can
        # reconnect with after= the last line it saw).
        self.cut = False


class LogBuffer:
    def __init__(self, capacity: int = 2000) -> None:
        self._lines: deque[LogLine] = deque(maxlen=max(1, capacity))
        self._seq = 0
        self._listeners: set[_Listener] = set()
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self._seq

    def append(self, text: str, stream: str = "out") -> LogLine:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f" [... {len(text) - MAX_LINE_CHARS} chars cut]"
        self._seq += 1
        line = LogLine(self._seq, time.time(), stream, text)
        self._lines.append(line)
        for listener in list(self._listeners):
            try:
                listener.queue.put_nowait(line)
            except asyncio.QueueFull:
                # A stuck reader must not hold the app back: it is cut off.
                listener.cut = True
                self._listeners.discard(listener)
        return line

    def system(self, text: str) -> LogLine:
        return self.append(f"[ecode] {text}", "system")

    def feed(self, chunk: bytes) -> None:
        """Raw process output: split into lines, keeping a partial last line for later."""
        text = self._partial + self._decoder.decode(chunk)
        *lines, self._partial = text.split("\n")
        if len(self._partial) > MAX_LINE_CHARS:
            lines.append(self._partial)
            self._partial = ""
        for line in lines:
            self.append(line.rstrip("\r"))

    def flush_partial(self) -> None:
        if self._partial:
            self.append(self._partial.rstrip("\r"))
            self._partial = ""

    def since(self, after: int = 0) -> list[LogLine]:
        return [line for line in self._lines if line.seq > after]

    def tail(self, count: int) -> list[LogLine]:
        return list(self._lines)[-count:] if count > 0 else []

    def close(self) -> None:
        """No more lines: followers finish after what they already have."""
        self._closed = True
        for listener in list(self._listeners):
            try:
                listener.queue.put_nowait(_CLOSED)
            except asyncio.QueueFull:
                listener.cut = True
        self._listeners.clear()

    async def follow(self, after: int = 0) -> AsyncIterator[LogLine]:
        """Lines after ``after`` from the buffer, then live ones until the buffer closes."""
        listener = _Listener()
        # Registered before the replay is taken, and de-duplicated by seq, so no line is lost
        # or repeated between the replay and the live part.
        if not self._closed:
            self._listeners.add(listener)
        try:
            last = after
            for line in self.since(after):
                last = line.seq
                yield line
            while not self._closed or not listener.queue.empty():
                if listener.cut and listener.queue.empty():
                    return
                item = await listener.queue.get()
                if isinstance(item, _Closed):
                    return
                if item.seq > last:
                    last = item.seq
                    yield item
        finally:
            self._listeners.discard(listener)
