"""Bounded reads of workspace files: nothing a user can put in a file sizes the server's memory.

A workspace file is untrusted input of any size: a viewer can ask the tools to read a 400 MB
file with no line break in it. Every reader here works in fixed-size chunks and keeps at most
its caps in memory, whatever the file holds:

- :func:`read_capped` — the whole file, or a clear refusal when it is over a byte cap (for
  the callers that must hold all of it: editing, notebooks, resources);
- :func:`read_line_window` — a range of lines, each line cut at a byte cap with a note, and
  the total line count (for ``read_file``).

All of them block: call them in a thread.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass, field
from pathlib import Path

from ecode_jupyter.exceptions import InvalidInput

# One read() of this size at a time: big enough that a large file is a few thousand calls,
# small enough that holding a chunk is nothing next to the caps.
READ_CHUNK_BYTES = 64 * 1024
# A line longer than this is minified code or data, not something a reader (or a model)
# needs whole: it is cut and the note says how long it was.
DEFAULT_MAX_LINE_BYTES = 16 * 1024
BINARY_SNIFF_BYTES = 8192
# Folders a recursive listing or a search does not descend into: tooling, not the project.
SKIP_DIRS = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", ".ipynb_checkpoints", ".ecode"}
)


def looks_binary(sample: bytes) -> bool:
    """NUL bytes or invalid UTF-8 in the first bytes (a cut multi-byte char is fine)."""
    if b"\x00" in sample:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return True
    return False


def read_capped(path: Path, max_bytes: int, shown: str) -> bytes | None:
    """The whole content of ``path``, ``None`` when it does not exist.

    Raises ``InvalidInput`` when the file is larger than ``max_bytes``; at most
    ``max_bytes + 1`` bytes are ever read, even if the file grows while it is read.
    """
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        msg = f"{shown} is a directory"
        raise InvalidInput(msg) from exc
    with fh:
        size = os.fstat(fh.fileno()).st_size
        # fstat first: refuse a big file without reading a byte of it.
        data = b"" if size > max_bytes else fh.read(max_bytes + 1)
    if size > max_bytes or len(data) > max_bytes:
        msg = (
            f"{shown} is {max(size, len(data))} bytes, over the {max_bytes}-byte limit "
            "for this operation; read it in ranges with read_file"
        )
        raise InvalidInput(msg)
    return data


@dataclass
class LineWindow:
    """What :func:`read_line_window` found: the chosen lines (long ones cut, with a note),
    how many lines the file has, and whether the caps stopped the window early."""

    lines: list[str] = field(default_factory=list)
    total: int = 0
    cut: bool = False
    size: int = 0


def cut_line(text: str, number: int, full_bytes: int, max_line_bytes: int) -> str:
    """``text`` (the first bytes of line ``number``, decoded) with the note of a cut line."""
    # The cut may split a multi-byte character; drop the replacement char it decodes to.
    kept = text.rstrip("\r\n").removesuffix("\ufffd")
    return f"{kept}… [line {number} is {full_bytes} bytes; cut after {max_line_bytes}]\n"


def read_line_window(
    path: Path,
    start: int,
    end: int | None,
    *,
    max_bytes: int,
    max_lines: int,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> LineWindow:
    """Lines ``start..end`` (1-based, inclusive) of a UTF-8 file within the caps.

    Memory stays within ``max_bytes + max_line_bytes + READ_CHUNK_BYTES`` whatever the file:
    a line longer than ``max_line_bytes`` keeps only its head (the rest is counted, not
    held), and lines outside the window are only counted.
    """
    window = LineWindow()
    head = bytearray()  # the kept head of the line being read
    seen = 0  # bytes of that line so far, kept or not
    collecting = True  # False once the window is full: then lines are only counted

    def finish() -> None:
        nonlocal collecting
        number = window.total
        text = bytes(head).decode("utf-8", "replace")
        if seen > max_line_bytes:
            text = cut_line(text, number, seen, max_line_bytes)
        if len(window.lines) >= max_lines or window.size + len(text) > max_bytes:
            window.cut, collecting = True, False
            return
        window.lines.append(text)
        window.size += len(text)
        if end is not None and number >= end:
            collecting = False

    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK_BYTES):
            if not collecting or window.total + chunk.count(b"\n") < start - 1:
                # Nothing of this chunk is shown: count its lines without splitting it.
                window.total += chunk.count(b"\n")
                seen = 0 if chunk.endswith(b"\n") else seen + 1
                continue
            pos = 0
            while pos < len(chunk):
                newline = chunk.find(b"\n", pos)
                stop = len(chunk) if newline < 0 else newline + 1
                wanted = collecting and window.total + 1 >= start
                if wanted and len(head) < max_line_bytes:
                    head += chunk[pos : min(stop, pos + max_line_bytes - len(head))]
                seen += stop - pos
                pos = stop
                if newline >= 0:
                    window.total += 1
                    if wanted:
                        finish()
                    head.clear()
                    seen = 0
    if seen:  # a last line without a line break
        window.total += 1
        if collecting and window.total >= start:
            finish()
    return window
