"""A scripted model builds a Flask app through the real SDKs and the loopback servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.testing import text_turn, tool_turn

from .feed import events, of_type, wait_final
from .scripts import TEST_COMMAND, flask_build_script, use_loopback


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_scripted_model_builds_a_flask_app_whose_tests_pass(
    provider: str,
    ecode_api: Any,
    ecode_workspace_root: Path,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loopback = ecode_anthropic_loopback if provider == "anthropic" else ecode_openai_loopback
    server = loopback(flask_build_script())
    use_loopback(provider, server, monkeypatch)
    project = (await ecode_api("POST", "projects", body={"name": "todo"})).body
    resp = await ecode_api(
        "POST", f"projects/{project['id']}/runs", body={"prompt": "a Flask todo API with tests"}
    )
    assert resp.status == 201, resp.body
    assert resp.body["provider"] == provider
    run = await wait_final(ecode_api, resp.body["id"])

    feed = await events(ecode_api, run["id"])
    assert run["status"] == "completed", [(e["type"], e["data"]) for e in feed[-3:]]
    assert run["summary"]["tests"]["passed"] is True
    assert sorted(run["summary"]["files"]) == ["app.py", "tests/test_app.py"]
    # The model saw the failing test, then the passing one, in the tool results it was sent.
    first_run, second_run = server.requests[2], server.requests[4]
    assert "exit code 1" in first_run.tool_results()[0].content
    assert "assert 200 == 201" in first_run.tool_results()[0].content
    assert "exit code 0" in second_run.tool_results()[0].content
    assert "-1 -1" not in second_run.tool_results()[0].content
    # Every model call was reported and billed: usage on the run, one usage event per turn.
    assert run["usage"]["input_tokens"] > 0 and run["usage"]["output_tokens"] > 0
    assert len(of_type(feed, "usage")) == 5
    assert [e["seq"] for e in feed] == list(range(1, len(feed) + 1))
    assert of_type(feed, "plan")[0]["data"]["steps"][0] == "Write the Flask app."
    edits = [e for e in of_type(feed, "file.changed") if e["data"]["action"] == "modified"]
    assert "+    return jsonify(todo), 201" in edits[0]["data"]["diff"]
    # And the project it left behind passes its own tests, run from scratch.
    workspace = ecode_workspace_root / project["id"]
    check = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert TEST_COMMAND in [
        e["data"]["arguments"].get("command") for e in of_type(feed, "tool.call")
    ]


async def test_a_run_whose_tests_still_fail_ends_failed_with_the_reason(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = "def test_sum():\n    assert 1 + 1 == 3\n"
    server = ecode_anthropic_loopback(
        [
            tool_turn("write_file", {"path": "tests/test_sum.py", "content": failing}),
            text_turn("Done."),
            text_turn("I cannot see what is wrong."),
        ]
    )
    use_loopback("anthropic", server, monkeypatch)
    pid = (await ecode_api("POST", "projects", body={"name": "sums"})).body["id"]
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "sums"})
    run = await wait_final(ecode_api, started.body["id"])
    assert (run["status"], run["reason"]) == ("failed", "tests_failing")
    assert run["summary"]["tests"]["passed"] is False
    assert run["summary"]["tests"]["exit_code"] == 1
    # The model was shown the failing output and asked to fix it, once.
    asked = server.requests[2].json["messages"][-1]["content"]
    text = asked if isinstance(asked, str) else "".join(b.get("text", "") for b in asked)
    assert "Verification failed" in text and "test_sum.py::test_sum" in text and "1 failed" in text
    failed = of_type(await events(ecode_api, run["id"]), "run.failed")[0]["data"]
    assert "made no further changes" in failed["message"]
