"""The example notebook says what the magics do: each of its cells parses as intended."""

from __future__ import annotations

from pathlib import Path

import nbformat

from ecode_jupyter.magics import parse_prompt_line, subcommand_of

EXAMPLE = Path(__file__).parents[2] / "examples" / "notebooks" / "ecode_magics.ipynb"


def test_the_example_notebook_uses_the_magics_as_documented() -> None:
    nb = nbformat.read(EXAMPLE, as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0] == "%load_ext ecode_jupyter"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    subcommands = []
    prompts = []
    for source in code[1:]:
        first, _, body = source.partition("\n")
        if first.startswith("%%ecode"):
            opts, rest = parse_prompt_line(first.removeprefix("%%ecode"))
            assert not rest and body.strip()
            prompts.append((opts, body))
            continue
        assert first.startswith("%ecode") and not body, source
        line = first.removeprefix("%ecode")
        words = subcommand_of(line)
        if words is None:
            prompts.append(parse_prompt_line(line))
        else:
            subcommands.append(words)
    assert [w[0] for w in subcommands] == [
        "connect",
        "status",
        "runs",
        "watch",
        "projects",
        "use",
        "model",
        "credits",
        "help",
    ]
    # A quoted name with spaces is one argument.
    assert ["use", "A Flask todo API with tests"] in subcommands
    assert prompts[0][1] == "a Flask todo API with tests"
    assert prompts[1][1].startswith("Add a /stats endpoint")
    # A change to the project just built says so; a plain prompt would start a new one.
    assert prompts[1][0].project == "."
    new_project = prompts[2][0]
    assert (new_project.new, new_project.detach) == ("Items API", True)


def test_prompts_that_start_like_subcommands() -> None:
    assert subcommand_of(" status") == ["status"]
    assert subcommand_of("status page for my shop") is None
    assert subcommand_of("model gpt-4.1") == ["model", "gpt-4.1"]
    assert subcommand_of("use FastAPI to build a todo API") is None
    assert subcommand_of("-- status") is None
    assert subcommand_of("runs that's it") is None  # an apostrophe is not a quote
    assert subcommand_of('connect http://h:8888/ "tok en"') == [
        "connect",
        "http://h:8888/",
        "tok en",
    ]
