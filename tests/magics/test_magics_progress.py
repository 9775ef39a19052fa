"""A recorded run's feed folded into progress and drawn as HTML and text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ecode_jupyter.client.progress import RunProgress, credits_text
from ecode_jupyter.client.render import run_html, run_text, summary_text

from .fake_server import event

RECORDED = Path(__file__).parent / "data" / "offline_flask_run.json"


def _recorded() -> dict[str, Any]:
    return dict(json.loads(RECORDED.read_text()))


def test_a_recorded_offline_run_ends_completed_with_its_files_and_tests() -> None:
    data = _recorded()
    progress = RunProgress(data["run"]["id"])
    for ev in data["events"]:
        progress.apply(ev)
    assert progress.status == "completed"
    assert progress.last_seq == data["events"][-1]["seq"]
    assert sorted(progress.files) == sorted(data["run"]["summary"]["files"])
    assert progress.files["app.py"].action == "created"
    assert progress.files["app.py"].added == 126
    assert progress.tests_ok is True
    # The verify step's pytest summary line, e.g. "17 passed".
    tail = data["run"]["summary"]["tests"]["output_tail"]
    passed = re.search(r"(\d+ passed)", tail)
    assert passed and progress.tests == passed[1]
    # pytest's dots arrive in chunks without newlines; they are glued back into lines.
    assert any(line.startswith("....") and line.endswith("[100%]") for line in progress.output)
    assert progress.output[-1] == f"{passed[1]} in " + tail.rsplit(" in ", 1)[1].strip()
    assert progress.model == "offline"
    # The offline provider says it is not AI; the card says so too.
    assert progress.notice is not None and "No AI model" in progress.notice
    assert progress.plan[0].startswith("Write the 7 files")

    summary = summary_text(progress, "@alice/todo")
    assert "completed" in summary
    assert "7 files changed" in summary
    assert "created app.py +126" in summary
    assert "0 credits" in summary


def test_the_card_while_running_shows_the_step_tools_and_output() -> None:
    data = _recorded()
    progress = RunProgress(data["run"]["id"])
    # Stop right after the requirement check's output: a command is running.
    for ev in data["events"][:36]:
        progress.apply(ev)
    assert progress.status == "running"
    html = run_html(progress, "@alice/todo")
    text = run_text(progress, "@alice/todo")
    assert "running" in html and "running" in text
    assert "MISSING=[]" in html and "MISSING=[]" in text
    assert "run_command" in html
    assert "Step 3" in html and "step 3" in text
    assert "7 file(s) changed" in html


def test_html_escapes_what_the_server_sends() -> None:
    progress = RunProgress("r1")
    progress.apply(event(1, "run.started", "r1", model="<b>m</b>"))
    progress.apply(event(2, "message.delta", "r1", text="<script>alert(1)</script>"))
    progress.apply(event(3, "file.changed", "r1", path="<img src=x>.py", action="created"))
    html = run_html(progress, "@a/<p>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html
    assert "<b>m</b>" not in html


def test_usage_totals_cost_and_a_failed_run() -> None:
    progress = RunProgress("r1")
    progress.apply(event(1, "run.started", "r1", provider="anthropic", model="claude"))
    progress.apply(
        event(
            2,
            "usage",
            "r1",
            input_tokens=100,
            output_tokens=20,
            cost_micros=1500,
            total={"input_tokens": 100, "output_tokens": 20, "cost_micros": 1500},
        )
    )
    progress.apply(
        event(
            3,
            "usage",
            "r1",
            input_tokens=50,
            output_tokens=5,
            cost_micros=700,
            total={"input_tokens": 150, "output_tokens": 25, "cost_micros": 2200},
        )
    )
    progress.apply(
        event(
            4,
            "tool.call",
            "r1",
            call_id="c1",
            name="run_command",
            arguments={"command": "python -m pytest -q"},
        )
    )
    progress.apply(
        event(
            5,
            "tool.result",
            "r1",
            call_id="c1",
            name="run_command",
            ok=False,
            exit_code=1,
            output="F.\n==== 1 failed, 1 passed in 0.05s ====",
        )
    )
    progress.apply(
        event(
            6, "run.failed", "r1", reason="tests_failing", message="the project's tests still fail"
        )
    )
    assert progress.usage["input_tokens"] == 150 and progress.usage["output_tokens"] == 25
    assert progress.cost_micros == 2200
    assert progress.tests == "1 failed, 1 passed"
    assert progress.tests_ok is False
    summary = summary_text(progress)
    assert "failed" in summary
    assert "why: the project's tests still fail" in summary
    assert "175 tokens" in summary
    assert credits_text(2200) in summary
    assert "%ecode" in summary  # what to do next


def test_credits_are_shown_in_credits_not_micros() -> None:
    assert credits_text(0) == "0 credits"
    assert credits_text(1_250_000) == "1.25 credits"
    assert credits_text(2200) == "0.0022 credits"
    assert credits_text(12_000_000_000) == "12,000 credits"


def test_a_run_out_of_credits_says_whom_to_ask() -> None:
    progress = RunProgress("r1")
    progress.apply(event(1, "run.started", "r1", provider="anthropic", model="claude"))
    progress.apply(
        event(2, "run.failed", "r1", reason="insufficient_credits", message="not enough credits")
    )
    summary = summary_text(progress)
    assert "why: not enough credits" in summary
    assert "out of credits — ask your admin" in summary


def test_a_pending_approval_says_how_to_answer_it_until_resolved() -> None:
    progress = RunProgress("r1")
    progress.apply(event(1, "run.started", "r1", provider="anthropic"))
    progress.apply(
        event(2, "approval.requested", "r1", approval_id="a1", message="run_command `curl x`")
    )
    assert "%ecode approve r1 a1" in run_html(progress)
    assert "answer: %ecode approve r1 a1" in run_text(progress)
    progress.apply(event(3, "approval.resolved", "r1", approval_id="a1", decision="allow"))
    assert progress.approval is None and "approve" not in run_text(progress)
