"""Searching a workspace in linear time, off the event loop, within a time and output budget.

A search pattern comes from whoever may read the project (a viewer, a model). Python's ``re``
backtracks: ``^(a|a)*b`` over 28 letters takes seconds, 4x more per 2 more letters, and it
holds the GIL all that time, so a search in a worker thread still froze every request of the
server. RE2 (``google-re2``) matches in time linear in the text, refuses the features that
need backtracking (backreferences, look-around) and releases the GIL while it matches.

What a search may cost is bounded three ways: each file is read up to a byte cap, the number
of matches (each line cut to a few hundred characters) is capped, and a deadline (also
cancellation) stops the walk between lines.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import re2

from ecode_jupyter.exceptions import InvalidInput
from ecode_jupyter.workspace.paths import resolve_in_workspace, workspace_relative
from ecode_jupyter.workspace.reading import BINARY_SNIFF_BYTES, SKIP_DIRS, looks_binary

LINE_CHARS = 400
MAX_PATTERN_CHARS = 2000
# RE2 builds its automaton within this memory; a pattern that needs more is refused.
PATTERN_MAX_MEM = 8 * 1024 * 1024
# How often (in lines) a long file checks the deadline and cancellation.
CHECK_EVERY_LINES = 4096


@dataclass(frozen=True)
class SearchBudget:
    """What one search may use: matches returned, bytes read per file, seconds of work."""

    max_results: int = 200
    max_file_bytes: int = 2 * 1024 * 1024
    deadline_s: float = 20.0


def compile_pattern(pattern: str, *, literal: bool, ignore_case: bool) -> Any:
    """The RE2 program of ``pattern``; ``InvalidInput`` with the reason for one it refuses."""
    if len(pattern) > MAX_PATTERN_CHARS:
        msg = f"invalid regular expression: longer than {MAX_PATTERN_CHARS} characters"
        raise InvalidInput(msg, field="pattern")
    options = re2.Options()
    options.literal = literal
    options.case_sensitive = not ignore_case
    options.max_mem = PATTERN_MAX_MEM
    options.log_errors = False  # the reason goes to the caller, not to the server's stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        msg = (
            f"invalid regular expression: {reason}. search_files uses RE2 syntax, which runs "
            "in linear time: no backreferences (\\1) or look-around ((?=...), (?<=...)); "
            "write \\z for Python's \\Z"
        )
        raise InvalidInput(msg, field="pattern") from None


def _walk_files(start: Path) -> Iterator[Path]:
    if start.is_file():
        yield start
        return
    for folder, dirs, names in os.walk(start):  # os.walk does not follow symlinked folders
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            yield Path(folder) / name


def _read_head(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes, or ``None`` when it is larger than ``max_bytes`` (never read whole)."""
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


def search_workspace(
    root: Path,
    start: Path,
    regex: Any,
    glob: str | None,
    budget: SearchBudget,
    cancelled: threading.Event | None = None,
) -> dict[str, Any]:
    """Matching lines under ``start`` (blocking: call it in a thread)."""
    matches: list[dict[str, Any]] = []
    searched = 0
    skipped: list[str] = []
    stopped: str | None = None
    deadline = time.monotonic() + budget.deadline_s

    def over_time() -> bool:
        return time.monotonic() > deadline or (cancelled is not None and cancelled.is_set())

    for path in _walk_files(start):
        if over_time():
            stopped = f"stopped after {budget.deadline_s:g}s; narrow the path or glob"
            break
        rel = workspace_relative(root, path)
        if glob and not (fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(path.name, glob)):
            continue
        if path.is_symlink():
            # A symlinked file is searched only where it really lives inside the workspace.
            try:
                resolve_in_workspace(root, rel)
            except InvalidInput:
                continue
        try:
            data = _read_head(path, budget.max_file_bytes)
        except OSError:
            continue
        if data is None:
            skipped.append(rel)
            continue
        if looks_binary(data[:BINARY_SNIFF_BYTES]):
            continue
        searched += 1
        # RE2 matches the bytes as UTF-8 directly: only matching lines are ever decoded.
        for number, line in enumerate(data.split(b"\n"), start=1):
            if number % CHECK_EVERY_LINES == 0 and over_time():
                stopped = f"stopped after {budget.deadline_s:g}s; narrow the path or glob"
                break
            if regex.search(line) is None:
                continue
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            if len(text) > LINE_CHARS:
                text = text[:LINE_CHARS] + "…"
            matches.append({"path": rel, "line": number, "text": text})
            if len(matches) >= budget.max_results:
                stopped = f"capped at {budget.max_results} matches"
                break
        if stopped:
            break
    result: dict[str, Any] = {
        "matches": matches,
        "truncated": stopped is not None,
        "files_searched": searched,
        "skipped_large_files": skipped[:20],
    }
    if stopped:
        result["note"] = stopped
    return result
