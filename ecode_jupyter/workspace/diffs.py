"""Text differences: the summary a human sees, and the small edits applied to a live document.

Two different jobs share the same idea. :func:`summarize` produces what a ``file.changed``
event carries (lines added/removed and a unified diff, capped). :func:`text_edits` produces
the fewest, smallest spans to replace so an edit through a collaborative Y text touches only
what changed and leaves the rest — where a person may be typing — alone.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

DEFAULT_DIFF_CAP_CHARS = 8000


@dataclass(frozen=True)
class DiffSummary:
    added: int
    removed: int
    diff: str
    truncated: bool


def summarize(
    before: str, after: str, path: str, *, cap_chars: int = DEFAULT_DIFF_CAP_CHARS
) -> DiffSummary:
    """Count changed lines and render a unified diff of at most ``cap_chars`` characters."""
    a = before.splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    added = removed = 0
    out: list[str] = []
    size = 0
    truncated = False
    for line in difflib.unified_diff(a, b, fromfile=f"a/{path}", tofile=f"b/{path}", n=2):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
        if truncated:
            continue
        text = line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
        if size + len(text) > cap_chars:
            truncated = True
            continue
        out.append(text)
        size += len(text)
    diff = "".join(out)
    if truncated:
        diff += f"... diff truncated at {cap_chars} characters\n"
    return DiffSummary(added=added, removed=removed, diff=diff, truncated=truncated)


@dataclass(frozen=True)
class TextEdit:
    """Replace ``old[start:end]`` (character offsets) with ``text``."""

    start: int
    end: int
    text: str


def _trim(old: str, new: str) -> tuple[int, int]:
    """Lengths of the common prefix and (non-overlapping) common suffix."""
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    return prefix, suffix


def text_edits(old: str, new: str) -> list[TextEdit]:
    """The edits turning ``old`` into ``new``, in ascending order, each as small as practical.

    Line-level hunks first (so separate changes stay separate edits and the text between them
    is never rewritten), then each hunk trimmed to the characters that differ.
    """
    if old == new:
        return []
    prefix, suffix = _trim(old, new)
    old_mid = old[prefix : len(old) - suffix]
    new_mid = new[prefix : len(new) - suffix]
    a = old_mid.splitlines(keepends=True)
    b = new_mid.splitlines(keepends=True)
    # Character offsets of each line start in old_mid / new_mid.
    a_off = [0]
    for line in a:
        a_off.append(a_off[-1] + len(line))
    b_off = [0]
    for line in b:
        b_off.append(b_off[-1] + len(line))
    edits: list[TextEdit] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        o_start, o_end = a_off[i1], a_off[i2]
        n_start, n_end = b_off[j1], b_off[j2]
        seg_old = old_mid[o_start:o_end]
        seg_new = new_mid[n_start:n_end]
        p, s = _trim(seg_old, seg_new)
        edits.append(
            TextEdit(
                start=prefix + o_start + p,
                end=prefix + o_end - s,
                text=seg_new[p : len(seg_new) - s],
            )
        )
    return edits


def apply_edits(old: str, edits: list[TextEdit]) -> str:
    """Apply ``edits`` (ascending, non-overlapping) to ``old``; used to check a plan."""
    out: list[str] = []
    pos = 0
    for edit in edits:
        out.append(old[pos : edit.start])
        out.append(edit.text)
        pos = edit.end
    out.append(old[pos:])
    return "".join(out)
