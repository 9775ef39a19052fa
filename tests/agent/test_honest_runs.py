"""A run ends completed only when the suite's own checks pass: whatever the model ran, said or
stopped for, through the real SDKs against both wire formats."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecode_jupyter.testing import ScriptedToolCall, ScriptedTurn, text_turn, tool_turn

from .feed import events, of_type, wait_final
from .scripts import use_loopback

PROVIDERS = ["anthropic", "openai"]
FAILING_TEST = "def test_sum():\n    assert 1 + 1 == 3\n"


def loopback(provider: str, anthropic: Any, openai: Any) -> Any:
    return anthropic if provider == "anthropic" else openai


async def start(ecode_api: Any, prompt: str = "build it", **project: Any) -> dict[str, Any]:
    pid = (await ecode_api("POST", "projects", body={"name": "p", **project})).body["id"]
    resp = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": prompt})
    assert resp.status == 201, resp.body
    return dict(resp.body)


def sent_text(request: Any) -> str:
    """Everything the client sent in a request's last message, as text."""
    return json.dumps(request.json["messages"][-1])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_collect_only_pytest_run_does_not_make_a_run_completed(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = loopback(provider, ecode_anthropic_loopback, ecode_openai_loopback)(
        [
            tool_turn("write_file", {"path": "tests/test_sum.py", "content": FAILING_TEST}),
            tool_turn("run_command", {"command": "python -m pytest -q --co"}),
            text_turn("All tests pass."),
            text_turn("They pass, I checked."),
        ]
    )
    use_loopback(provider, server, monkeypatch)
    run = await wait_final(ecode_api, (await start(ecode_api))["id"])
    feed = await events(ecode_api, run["id"])

    assert (run["status"], run["reason"]) == ("failed", "tests_failing")
    # The model's own `--co` exited 0; the suite ran the tests itself, and they fail.
    own = [e for e in of_type(feed, "tool.result") if e["data"]["call_id"].startswith("verify")]
    assert of_type(feed, "tool.result")[1]["data"]["exit_code"] == 0
    assert own and own[0]["data"]["exit_code"] == 1
    checks = of_type(feed, "verify.result")
    assert [(c["data"]["kind"], c["data"]["exit_code"], c["data"]["passed"]) for c in checks] == [
        ("pytest", 1, False)
    ]
    assert "1 failed" in checks[0]["data"]["output_tail"]
    assert "1 failed" in run["summary"]["tests"]["output_tail"]
    assert "Verification failed" in sent_text(server.requests[3])


async def test_a_project_without_tests_is_not_verified(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback(
        [
            tool_turn("write_file", {"path": "app.py", "content": "print('hi')\n"}),
            text_turn("Done: app.py prints hi."),
            text_turn("It is done."),
        ]
    )
    use_loopback("anthropic", server, monkeypatch)
    run = await wait_final(ecode_api, (await start(ecode_api))["id"])
    assert (run["status"], run["reason"]) == ("failed", "tests_failing")
    assert run["summary"]["tests"]["exit_code"] == 5
    assert "no tests were collected" in run["summary"]["tests"]["note"]
    # The model was told what is missing, in words that ask for tests.
    assert "add pytest tests" in sent_text(server.requests[2])


PACKAGE_JSON = json.dumps({"name": "sums", "version": "1.0.0", "scripts": {"test": "node --test"}})
SUM_JS = "exports.sum = (a, b) => a - b;\n"
SUM_TEST = """\
const test = require("node:test");
const assert = require("node:assert");
const { sum } = require("../sum.js");

test("adds", () => {
  assert.strictEqual(sum(2, 3), 5);
});
"""


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_node_project_is_verified_with_npm_test(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = loopback(provider, ecode_anthropic_loopback, ecode_openai_loopback)(
        [
            ScriptedTurn(
                text="1. Write sum.js.\n2. Test it with node --test.\n",
                tool_calls=[
                    ScriptedToolCall(
                        "write_file", {"path": "package.json", "content": PACKAGE_JSON}
                    ),
                    ScriptedToolCall("write_file", {"path": "sum.js", "content": SUM_JS}),
                    ScriptedToolCall(
                        "write_file", {"path": "test/sum.test.js", "content": SUM_TEST}
                    ),
                ],
            ),
            text_turn("Built sum.js with a test."),
            tool_turn(
                "edit_file",
                {"path": "sum.js", "old_text": "a - b", "new_text": "a + b"},
                text="sum subtracted; fixing.",
            ),
            text_turn("Fixed: npm test passes."),
        ]
    )
    use_loopback(provider, server, monkeypatch)
    run = await wait_final(ecode_api, (await start(ecode_api, "a sum module in Node"))["id"])
    feed = await events(ecode_api, run["id"])

    assert run["status"] == "completed", run
    checks = [(c["data"]["kind"], c["data"]["passed"]) for c in of_type(feed, "verify.result")]
    # npm test failed first, then passed; pytest was never the check of this project.
    assert checks == [("npm", False), ("npm", True)]
    assert "npm test passes" in of_type(feed, "run.completed")[0]["data"]["message"]
    assert "npm test" in sent_text(server.requests[2])
    # The system prompt asks for the Node project's own tests, not pytest.
    system = json.dumps(server.requests[0].json.get("system") or server.requests[0].json)
    assert "never pytest for a Node project" in system


NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["total = sum(range(4))\n", "print(total)\n"],
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["assert total == 7, total\n"],
        },
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


async def test_a_notebook_project_is_executed_top_to_bottom(
    ecode_api: Any, ecode_openai_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = json.dumps(NOTEBOOK)
    server = ecode_openai_loopback(
        [
            tool_turn("write_file", {"path": "sums.ipynb", "content": broken}),
            text_turn("The notebook is ready."),
            tool_turn(
                "write_file",
                {"path": "sums.ipynb", "content": broken.replace("total == 7", "total == 6")},
            ),
            text_turn("Fixed the assertion."),
        ]
    )
    use_loopback("openai", server, monkeypatch)
    run = await wait_final(ecode_api, (await start(ecode_api, "a notebook"))["id"])
    feed = await events(ecode_api, run["id"])

    assert run["status"] == "completed", run
    checks = of_type(feed, "verify.result")
    assert [(c["data"]["kind"], c["data"]["passed"]) for c in checks] == [
        ("notebook", False),
        ("notebook", True),
    ]
    assert "AssertionError" in checks[0]["data"]["output_tail"]
    assert "2 code cells ran top to bottom" in checks[1]["data"]["output_tail"]
    assert "runs top to bottom" in sent_text(server.requests[2])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([text_turn("All done.", stop_reason="model_context_window_exceeded")], "context_window"),
        ([text_turn("All done.", stop_reason="some_new_reason")], "unknown_stop_reason"),
        ([text_turn("Working.", stop_reason="pause_turn")] * 4, "unknown_stop_reason"),
        ([text_turn("")] * 3, "empty_answer"),
    ],
    ids=["context-window", "unknown", "pause-turn", "empty"],
)
async def test_answers_that_are_not_finished_never_complete_a_run(
    provider: str,
    turns: list[ScriptedTurn],
    reason: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = loopback(provider, ecode_anthropic_loopback, ecode_openai_loopback)(turns)
    use_loopback(provider, server, monkeypatch)
    # A template's passing tests: were the answer taken as finished, the run would complete.
    run = await wait_final(ecode_api, (await start(ecode_api, template="python-script"))["id"])
    feed = await events(ecode_api, run["id"])
    assert (run["status"], run["reason"]) == ("failed", reason)
    assert of_type(feed, "verify.result") == []
    assert len(server.requests) == len(turns)
    if reason == "empty_answer":
        assert "Your last answer was empty" in sent_text(server.requests[1])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_tool_call_cut_by_the_output_limit_is_reported_as_cut(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cut = ScriptedToolCall("write_file", raw_arguments='{"path": "app.py", "content": "print(1')
    server = loopback(provider, ecode_anthropic_loopback, ecode_openai_loopback)(
        [
            ScriptedTurn(tool_calls=[cut], stop_reason="max_tokens"),
            text_turn("I will stop here.", stop_reason="some_new_reason"),
        ]
    )
    use_loopback(provider, server, monkeypatch)
    run = await wait_final(ecode_api, (await start(ecode_api))["id"])
    (result,) = server.requests[1].tool_results()
    assert result.is_error
    assert "your output was cut off by the output limit" in result.content
    assert "JSON" not in result.content
    assert run["status"] == "failed"


async def test_the_offline_provider_says_when_no_template_fits(ecode_api: Any) -> None:
    run = await wait_final(
        ecode_api, (await start(ecode_api, "train a PyTorch model on the GPU"))["id"]
    )
    feed = await events(ecode_api, run["id"])
    assert (run["status"], run["reason"]) == ("failed", "no_template")
    failed = of_type(feed, "run.failed")[0]["data"]
    assert "PyTorch" in failed["message"] and "a GPU" in failed["message"]
    assert "no AI is used" in failed["message"]
    # Nothing was built and nothing checked: no files, no tool calls, no plan to tick off.
    for kind in ("tool.call", "file.changed", "verify.result", "plan"):
        assert of_type(feed, kind) == [], kind
    assert run["summary"]["files"] == []
