"""Three-way merge of text, line by line (the diff3 algorithm, as bzr's merge3 and git do it).

Undo reverts the agent's change of a file that a person edited since: ``base`` is the file as
the agent left it, ``ours`` what it is now (the person's edits on top), ``theirs`` what the
restore wants (the file before the agent's change). Regions only one side changed take that
side; regions both changed differently are conflicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher


@dataclass(frozen=True)
class MergeResult:
    text: str  # the merge; where it conflicts, "ours" (what the person has now)
    conflicts: int
    marked: str  # the merge with git-style conflict markers, to show the user

    @property
    def clean(self) -> bool:
        return self.conflicts == 0


def _sync_regions(
    base: list[str], ours: list[str], theirs: list[str]
) -> list[tuple[int, int, int, int, int, int]]:
    """Stretches of ``base`` both sides kept unchanged, with where they sit in each side."""
    # autojunk off: a file's frequent lines (blank ones, "}") are what anchors a merge.
    a_blocks = SequenceMatcher(None, base, ours, autojunk=False).get_matching_blocks()
    b_blocks = SequenceMatcher(None, base, theirs, autojunk=False).get_matching_blocks()
    regions = []
    ia = ib = 0
    while ia < len(a_blocks) and ib < len(b_blocks):
        a_base, a_at, a_len = a_blocks[ia]
        b_base, b_at, b_len = b_blocks[ib]
        start = max(a_base, b_base)
        end = min(a_base + a_len, b_base + b_len)
        if start < end:
            a_sub = a_at + (start - a_base)
            b_sub = b_at + (start - b_base)
            regions.append((start, end, a_sub, a_sub + end - start, b_sub, b_sub + end - start))
        if a_base + a_len < b_base + b_len:
            ia += 1
        else:
            ib += 1
    regions.append((len(base), len(base), len(ours), len(ours), len(theirs), len(theirs)))
    return regions


def merge3(base: str, ours: str, theirs: str) -> MergeResult:
    """Merge the change base→theirs into ``ours``; see the module docstring."""
    b_lines = base.splitlines(keepends=True)
    o_lines = ours.splitlines(keepends=True)
    t_lines = theirs.splitlines(keepends=True)
    out: list[str] = []
    marked: list[str] = []
    conflicts = 0
    iz = io = it = 0
    for z_start, z_end, o_start, o_end, t_start, t_end in _sync_regions(b_lines, o_lines, t_lines):
        b_chunk = b_lines[iz:z_start]
        o_chunk = o_lines[io:o_start]
        t_chunk = t_lines[it:t_start]
        if o_chunk == t_chunk or t_chunk == b_chunk:
            out += o_chunk
            marked += o_chunk
        elif o_chunk == b_chunk:
            out += t_chunk
            marked += t_chunk
        else:
            conflicts += 1
            out += o_chunk
            marked += ["<<<<<<< now\n", *_ended(o_chunk), "=======\n", *_ended(t_chunk)]
            marked.append(">>>>>>> restored\n")
        sync = b_lines[z_start:z_end]
        out += sync
        marked += sync
        iz, io, it = z_end, o_end, t_end
    return MergeResult("".join(out), conflicts, "".join(marked))


def _ended(lines: list[str]) -> list[str]:
    """Lines with the last one ended, so a marker never joins a file's unended last line."""
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines
