"""In terminal IPython (no frontend to update a display) progress prints as lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .fake_server import TOKEN, fake_ecode_server
from .kernel import kernel_env

RECORDED = Path(__file__).parent / "data" / "offline_flask_run.json"


def test_terminal_ipython_prints_steps_tools_and_the_summary() -> None:
    with fake_ecode_server() as fake:
        fake.state.script = json.loads(RECORDED.read_text())["events"]
        code = (
            "ip = get_ipython(); ip.run_line_magic('load_ext', 'ecode_jupyter'); "
            "ip.run_line_magic('ecode', 'a Flask todo API with tests')"
        )
        done = subprocess.run(
            [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", "-c", code],
            env=kernel_env(ECODE_SERVER_URL=fake.url, ECODE_TOKEN=TOKEN),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "ecode: run run1 started (@alice/a-flask-todo-api-with-tests)" in out
    # The agent's words, printed whole once each: the offline provider says it is not AI.
    assert out.count("No AI model is configured") == 1
    assert "  Writing 7 template files." in out
    assert "▶ verifying: python -m pytest -q" in out
    assert "· write_file app.py" in out
    # No live display to update: no HTML, and the card is not reprinted on every event.
    assert "<div" not in out
    assert out.count("ecode run run1") == 0
    assert "run run1 in @alice/a-flask-todo-api-with-tests completed" in out
    assert "created tests/test_app.py +107" in out
