"""The agent's parts on their own: redaction, trimming, model choice, plans, offline turns."""

from __future__ import annotations

import json
import subprocess
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecode_jupyter.agent.loop import plan_steps
from ecode_jupyter.agent.providers.base import Message, TextDelta, ToolCallReady, ToolSpec, TurnEnd
from ecode_jupyter.agent.providers.offline import OfflineProvider, parse_missing
from ecode_jupyter.agent.redaction import Redactor, StreamRedactor
from ecode_jupyter.agent.selection import ModelUnavailable, choose_model
from ecode_jupyter.agent.toolbox import model_schema, render_result, trim_middle
from ecode_jupyter.exceptions import InvalidInput
from ecode_jupyter.projects.templating import get_template

SECRETS = {"API_TOKEN": "tok-4f9a1c0e77d2", "DB_PASSWORD": "hunter2-long", "SHORT": "abc"}


def test_redactor_hides_every_secret_value_by_name_but_not_short_ones() -> None:
    r = Redactor(SECRETS)
    text = "token tok-4f9a1c0e77d2 and hunter2-long, abc stays"
    assert r.text(text) == "token [secret API_TOKEN] and [secret DB_PASSWORD], abc stays"
    nested = r.data({"out": [text], "tok-4f9a1c0e77d2": 1})
    assert "tok-4f9a1c0e77d2" not in json.dumps(nested)


@given(st.text(max_size=60), st.text(max_size=60), st.lists(st.integers(1, 30), max_size=8))
def test_a_secret_split_across_chunks_is_still_hidden(
    before: str, after: str, cuts: list[int]
) -> None:
    secret = SECRETS["API_TOKEN"]
    whole = before + secret + after
    stream = StreamRedactor(Redactor(SECRETS))
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(whole[start : start + cut])
        start += cut
    pieces.append(whole[start:])
    out = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert secret not in out
    assert out == Redactor(SECRETS).text(whole)


def test_trim_middle_keeps_head_and_more_tail_within_budget() -> None:
    text = "HEAD" + "x" * 10_000 + "TAIL"
    trimmed = trim_middle(text, 1000)
    assert len(trimmed) <= 1000
    assert trimmed.startswith("HEAD") and trimmed.endswith("TAIL")
    assert "characters omitted" in trimmed
    assert trim_middle("short", 1000) == "short"


def test_the_project_argument_is_hidden_from_the_model() -> None:
    schema = {
        "type": "object",
        "title": "run_commandArguments",
        "properties": {"project": {"type": "string"}, "command": {"type": "string"}},
        "required": ["project", "command"],
    }
    assert model_schema(schema) == {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    }


def test_results_are_rendered_for_the_model_without_echoing_files() -> None:
    command = {"exit_code": 1, "output": "E   assert 1 == 2\n", "timed_out": False}
    assert render_result("run_command", command, []).startswith("exit code 1\n--- output ---")
    written = {"path": "app.py", "action": "created", "added": 40, "removed": 0, "diff": "…"}
    assert render_result("write_file", written, []) == "created app.py (+40 -0)"
    assert render_result("list_files", None, ["a", "b"]) == "a\nb"


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [
        (None, {}, ("offline", "offline")),
        (None, {"ANTHROPIC_API_KEY": "k"}, ("anthropic", "claude-sonnet-4-6")),
        (None, {"OPENAI_API_KEY": "k"}, ("openai", "gpt-5.4")),
        ("gpt-5", {"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"}, ("openai", "gpt-5")),
        ("offline", {"ANTHROPIC_API_KEY": "k"}, ("offline", "offline")),
        ("openai-compatible:llama3", {"OPENAI_BASE_URL": "u"}, ("openai-compatible", "llama3")),
        ("llama3", {"OPENAI_BASE_URL": "u"}, ("openai-compatible", "llama3")),
    ],
)
def test_the_model_and_provider_of_a_run(
    requested: str | None, env: dict[str, str], expected: tuple[str, str]
) -> None:
    choice = choose_model(requested, env=env)
    assert (choice.provider, choice.model) == expected


@pytest.mark.parametrize(
    ("requested", "env"),
    [
        ("claude-sonnet-4-6", {}),  # no key at all: not quietly offline
        ("claude-sonnet-4-6", {"OPENAI_API_KEY": "k"}),  # not Claude's name sent to OpenAI
        ("gpt-5.4", {"ANTHROPIC_API_KEY": "k"}),
        ("llama3", {}),
    ],
)
def test_a_model_asked_for_by_name_is_run_as_asked_or_refused(
    requested: str, env: dict[str, str]
) -> None:
    with pytest.raises(ModelUnavailable, match=r"cannot run|has no") as refused:
        choose_model(requested, env=env)
    assert refused.value.status == 409 and refused.value.code == "model_unavailable"
    # Nothing asked for: the server's default, offline without a key (README's first command).
    assert choose_model(None, env=env).provider in ("offline", "openai", "anthropic")


def test_a_compatible_server_needs_a_model_name() -> None:
    with pytest.raises(InvalidInput, match="needs a model"):
        choose_model(None, env={"OPENAI_BASE_URL": "http://localhost:11434/v1"})


def test_plan_steps_are_the_numbered_or_bulleted_lines() -> None:
    text = "I will:\n1. Write app.py\n2) Add tests\n- Run them\nThen stop."
    assert plan_steps(text) == ["Write app.py", "Add tests", "Run them"]


async def _turn(provider: OfflineProvider, messages: list[Message], tools: list[ToolSpec]) -> list:
    return [
        e
        async for e in provider.stream_turn(system="", messages=messages, tools=tools, max_tokens=1)
    ]


TOOLS = [
    ToolSpec(n, "", {}) for n in ("list_files", "write_file", "run_command", "install_packages")
]


async def test_the_offline_provider_writes_missing_files_and_installs_when_one_is_missing() -> None:
    provider = OfflineProvider(get_template("flask-api"), project_name="Todo", slug="todo")
    history = [Message.user("a flask app")]
    first = await _turn(provider, history, TOOLS)
    assert "no AI is used" in "".join(e.text for e in first if isinstance(e, TextDelta))
    assert [e.call.name for e in first if isinstance(e, ToolCallReady)] == ["list_files"]
    listing = {"entries": [{"path": "app.py", "type": "file"}]}
    history.append(Message.tool_result("offline_1", json.dumps(listing)))
    second = await _turn(provider, history, TOOLS)
    paths = [e.call.arguments["path"] for e in second if isinstance(e, ToolCallReady)]
    assert "app.py" not in paths and "tests/test_app.py" in paths
    history.append(Message.tool_result("x", "created"))
    third = await _turn(provider, history, TOOLS)
    check = [e.call for e in third if isinstance(e, ToolCallReady)][0]
    assert check.name == "run_command" and "MISSING=" in check.arguments["command"]
    history.append(Message.tool_result("y", 'exit code 0\n--- output ---\nMISSING=["flask>=3,<4"]'))
    fourth = await _turn(provider, history, TOOLS)
    install = [e.call for e in fourth if isinstance(e, ToolCallReady)][0]
    # All of the template's requirements: they go into the project's own .venv, which is the
    # project's python from then on (pytest was "there" only in the server's python).
    assert (install.name, install.arguments) == (
        "install_packages",
        {"packages": ["flask>=3,<4", "pytest>=8"]},
    )
    fifth = await _turn(provider, history, TOOLS)
    assert isinstance(fifth[-1], TurnEnd) and fifth[-1].stop_reason == "end_turn"
    assert fifth[-1].usage.is_zero


async def _walk_to_install(provider: OfflineProvider, history: list[Message]) -> list:
    """Turns 1-4 of a build with nothing written yet; returns the 4th turn's events."""
    for result in (json.dumps({"entries": []}), "written", 'MISSING=["flask>=3,<4"]'):
        await _turn(provider, history, TOOLS)
        history.append(Message.tool_result("r", result))
    return await _turn(provider, history, TOOLS)


async def test_with_installs_on_the_offline_provider_checks_the_projects_own_venv() -> None:
    provider = OfflineProvider(get_template("flask-api"), project_name="Todo", slug="todo")
    history = [Message.user("a flask app")]
    for result in (json.dumps({"entries": []}), "written"):
        await _turn(provider, history, TOOLS)
        history.append(Message.tool_result("r", result))
    (check,) = [
        e.call for e in await _turn(provider, history, TOOLS) if isinstance(e, ToolCallReady)
    ]
    # Not the server's `python` (whose packages are not the project's): the project's .venv,
    # and without one every requirement counts as missing.
    command = check.arguments["command"]
    assert ".venv/bin/python" in command and not command.startswith("python ")
    ran = subprocess.run(["bash", "-c", command], cwd=tempfile.gettempdir(), capture_output=True)
    assert parse_missing(ran.stdout.decode()) == ["flask>=3,<4", "pytest>=8"]
    # With installs turned off the server's python is all there is: that is what is checked.
    off = OfflineProvider(
        get_template("flask-api"), project_name="T", slug="t", install_packages=False
    )
    history = [Message.user("a flask app")]
    for result in (json.dumps({"entries": []}), "written"):
        await _turn(off, history, TOOLS)
        history.append(Message.tool_result("r", result))
    (check,) = [e.call for e in await _turn(off, history, TOOLS) if isinstance(e, ToolCallReady)]
    assert check.arguments["command"].startswith("python -c ")


async def test_offline_turns_name_their_plan_item_and_a_failed_install_stops_the_run() -> None:
    provider = OfflineProvider(get_template("flask-api"), project_name="Todo", slug="todo")
    history = [Message.user("a flask app")]
    items = []
    for result in (json.dumps({"entries": []}), "written", 'MISSING=["flask>=3,<4"]'):
        items.append(provider.next_plan_item(history))
        await _turn(provider, history, TOOLS)
        history.append(Message.tool_result("r", result))
    items.append(provider.next_plan_item(history))
    install = await _turn(provider, history, TOOLS)
    assert [e.call.name for e in install if isinstance(e, ToolCallReady)] == ["install_packages"]
    # write, write, check (install item), install: "install" is not done while pip runs.
    assert items == [0, 0, 1, 1]
    history.append(Message.tool_result("r", "pip install failed with exit code 1", is_error=True))
    assert provider.next_plan_item(history) == 1
    stop = await _turn(provider, history, TOOLS)
    assert isinstance(stop[-1], TurnEnd) and stop[-1].stop_reason == "cannot_build"
    assert provider.cannot_build_reason == "install_failed"
    assert "failed" in "".join(e.text for e in stop if isinstance(e, TextDelta))

    # A successful install moves on to the tests (item 2), and the turn ends normally.
    ok = OfflineProvider(get_template("flask-api"), project_name="Todo", slug="todo")
    history = [Message.user("a flask app")]
    await _walk_to_install(ok, history)
    history.append(Message.tool_result("r", "installed"))
    assert ok.next_plan_item(history) == 2
    done = await _turn(ok, history, TOOLS)
    assert isinstance(done[-1], TurnEnd) and done[-1].stop_reason == "end_turn"


async def test_a_failed_npm_install_stops_the_run_before_the_tests() -> None:
    provider = OfflineProvider(get_template("express-api"), project_name="Todo", slug="todo")
    history = [Message.user("an express api")]
    for result in (json.dumps({"entries": []}), "written"):
        await _turn(provider, history, TOOLS)
        history.append(Message.tool_result("r", result))
    install = await _turn(provider, history, TOOLS)
    assert [e.call.name for e in install if isinstance(e, ToolCallReady)] == ["run_command"]
    # npm ran and failed: the command's result is not a tool error, its exit code says it.
    history.append(Message.tool_result("r", "exit code 1\n--- output ---\nnpm ERR! network"))
    assert provider.next_plan_item(history) == 1
    stop = await _turn(provider, history, TOOLS)
    assert isinstance(stop[-1], TurnEnd) and stop[-1].stop_reason == "cannot_build"
    assert provider.cannot_build_reason == "install_failed"


async def test_a_follow_up_the_offline_provider_cannot_do_says_so() -> None:
    provider = OfflineProvider(
        get_template("flask-api"), project_name="Todo", slug="todo", follow_up=True
    )
    turn = await _turn(provider, [Message.user("add a delete button")], TOOLS)
    text = "".join(e.text for e in turn if isinstance(e, TextDelta))
    assert "cannot change" in text and "Nothing was changed" in text
    assert not [e for e in turn if isinstance(e, ToolCallReady)]
    assert isinstance(turn[-1], TurnEnd) and turn[-1].stop_reason == "cannot_build"
    assert provider.cannot_build_reason == "offline_cannot_change"


def test_parse_missing_reads_the_check_output() -> None:
    assert parse_missing('noise\nMISSING=["a", "b>=1"]\n') == ["a", "b>=1"]
    assert parse_missing("Traceback ...") is None
