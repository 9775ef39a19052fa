"""The app-building eval (``jupyter ecode eval``, ecode_jupyter/evals/) end to end on a few specs
with the offline provider: the table, the JSON report, and honest results (a spec its templates
fit passes, a stack it has no template for fails with the reason). The rest run with the
command itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecode_jupyter.testing.browser import CHROMIUM

REPO = Path(__file__).resolve().parents[1]
SPECS = json.loads((REPO / "ecode_jupyter" / "evals" / "specs.json").read_text())["specs"]


def test_the_specs_are_data_across_the_stacks() -> None:
    assert len(SPECS) >= 30
    assert {"flask", "fastapi", "streamlit", "notebook", "express", "react", "nextjs"} <= {
        s["stack"] for s in SPECS
    }
    kinds = {c["kind"] for s in SPECS for c in s["checks"]}
    assert kinds == {"http", "browser", "file"}
    assert all(s["prompt"] and s["checks"] for s in SPECS)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium not found at {CHROMIUM}")
def test_the_eval_runs_specs_through_a_real_server_and_reports(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecode_jupyter.cli",
            "eval",
            "--specs",
            "flask-todo-api",
            "nextjs-blog",
            "--report",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env={**env, "JUPYTER_PLATFORM_DIRS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed 1/2 (50%)" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["provider"] == "offline"
    flask, nextjs = report["results"]
    # The Flask template fits its spec: the run completed, and the API answered as specified.
    assert flask["passed"] and flask["status"] == "completed"
    assert [c["ok"] for c in flask["checks"]] == [True, True, True]
    assert flask["first_preview_s"] > 0 and flask["credits"] == 0
    # No template is built on Next.js: nothing built, and the report says why.
    assert not nextjs["passed"] and nextjs["reason"] == "no_template"
    assert report["summary"]["pass_rate"] == 0.5 and report["summary"]["specs"] == 2
