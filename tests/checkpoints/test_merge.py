"""The three-way merge undo uses: a person's edits stay, the revert lands, overlaps conflict."""

from __future__ import annotations

from ecode_jupyter.checkpoints.merge import merge3

AGENT_LEFT = "import os\n\ndef main():\n    print('agent')\n    return 0\n\n# end\n"
BEFORE_AGENT = "import os\n\ndef main():\n    print('hello')\n    return 0\n\n# end\n"


def test_edits_in_other_places_merge_cleanly() -> None:
    person = AGENT_LEFT.replace("import os\n", "import os\nimport sys\n") + "# person\n"
    merged = merge3(AGENT_LEFT, person, BEFORE_AGENT)
    assert merged.clean
    assert merged.text == (
        "import os\nimport sys\n\ndef main():\n    print('hello')\n    return 0\n\n# end\n"
        "# person\n"
    )


def test_an_edit_of_the_same_line_is_a_conflict_with_both_sides_shown() -> None:
    person = AGENT_LEFT.replace("print('agent')", "print('person')")
    merged = merge3(AGENT_LEFT, person, BEFORE_AGENT)
    assert merged.conflicts == 1
    assert "<<<<<<< now\n    print('person')\n=======\n    print('hello')\n>>>>>>> restored\n" in (
        merged.marked
    )


def test_a_person_who_made_the_same_change_is_no_conflict() -> None:
    merged = merge3(AGENT_LEFT, BEFORE_AGENT, BEFORE_AGENT)
    assert merged.clean and merged.text == BEFORE_AGENT


def test_a_last_line_without_newline_keeps_markers_on_their_own_lines() -> None:
    merged = merge3("a\nb", "a\nperson", "a\nwanted")
    assert merged.conflicts == 1
    assert merged.marked == "a\n<<<<<<< now\nperson\n=======\nwanted\n>>>>>>> restored\n"
