from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ecode_jupyter.workspace.diffs import apply_edits, summarize, text_edits

_text = st.text(alphabet=st.sampled_from(list("ab\n é😀")), max_size=60)


@given(_text, _text)
def test_edits_reproduce_the_target(old: str, new: str) -> None:
    edits = text_edits(old, new)
    assert apply_edits(old, edits) == new
    starts = [e.start for e in edits]
    assert starts == sorted(starts)
    assert all(a.end <= b.start for a, b in zip(edits, edits[1:], strict=False))


def test_separate_changes_stay_separate_and_small() -> None:
    old = "".join(f"line {i}\n" for i in range(100))
    new = old.replace("line 3\n", "line three\n").replace("line 90\n", "line ninety\n")
    edits = text_edits(old, new)
    assert [e.text for e in edits] == ["three", "ninety"]
    # Lines 4..89 are never rewritten: a person typing there keeps their edit.
    assert all(e.end - e.start <= 2 for e in edits)


def test_summary_is_capped() -> None:
    old = "x\n" * 10
    new = "".join(f"y{i}\n" for i in range(5000))
    summary = summarize(old, new, "big.txt", cap_chars=500)
    assert summary.added == 5000 and summary.removed == 10
    assert summary.truncated and len(summary.diff) < 600
    assert summary.diff.startswith("--- a/big.txt")
