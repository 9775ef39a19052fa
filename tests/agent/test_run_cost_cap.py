"""A run's own cost cap (``max_credits``): no model call starts whose hold would take the run
past it; the run stops with a clear reason and event, and ``continue`` with a higher cap
takes it on. The cap comes from the API as a decimal string, like every credit amount."""

from __future__ import annotations

from typing import Any

import pytest

from ecode_jupyter.testing import LoopbackRequest, ScriptedTurn, text_turn, tool_turn

from .feed import events, wait_final


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {
        "agent_offline_installs": False,
        "agent_max_wall_time_s": 120.0,
        "agent_max_output_tokens": 1024,
        "monthly_allowance": 5.0,
    }


APP = "def add(a, b):\n    return a + b\n"
APP_TEST = "from app import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


@pytest.fixture
def model(ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    def respond(request: LoopbackRequest) -> ScriptedTurn:
        turns = sum(1 for m in request.json.get("messages") or [] if m.get("role") == "assistant")
        if turns == 0:
            return tool_turn("write_file", {"path": "app.py", "content": APP})
        if turns == 1:
            return tool_turn("write_file", {"path": "tests/test_app.py", "content": APP_TEST})
        return text_turn("Done: app.py with a passing test.")

    server = ecode_anthropic_loopback(respond)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    return server


async def test_a_tiny_cap_stops_the_run_before_its_first_model_call(
    ecode_api: Any, model: Any
) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "Capped"})).body["id"]
    started = await ecode_api(
        "POST",
        f"projects/{pid}/runs",
        body={"prompt": "list the files", "model": "claude-haiku-4-5", "max_credits": "0.0001"},
    )
    assert started.status == 201, started.body
    assert started.body["max_credits"] == "0.000100"
    final = await wait_final(ecode_api, started.body["id"])
    assert (final["status"], final["reason"]) == ("failed", "max_credits")
    # Stopped before anything was sent: no request reached the model, nothing was charged.
    assert model.requests == []
    assert final["cost_micros"] == 0
    feed = await events(ecode_api, started.body["id"])
    failed = feed[-1]
    assert failed["type"] == "run.failed" and failed["data"]["reason"] == "max_credits"
    assert "continue it with a higher max_credits" in failed["data"]["message"]
    account = (await ecode_api("GET", "billing/account")).body
    assert account["open_reservations"] == 0

    # Continued with a cap that fits: it runs to the end, within the cap.
    again = await ecode_api(
        "POST", f"runs/{started.body['id']}/continue", body={"max_credits": "2.5"}
    )
    assert again.status == 201, again.body
    assert again.body["max_credits"] == "2.500000"
    done = await wait_final(ecode_api, again.body["id"])
    assert done["status"] == "completed", done
    assert 0 < done["cost_micros"] <= 2_500_000
    assert len(model.requests) == 3


@pytest.mark.parametrize("cap", ["0", "-1", "lots", "1e400", [1]])
async def test_a_bad_cap_is_refused_before_anything_starts(ecode_api: Any, cap: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": f"Bad {cap}"})).body["id"]
    started = await ecode_api(
        "POST", f"projects/{pid}/runs", body={"prompt": "go", "max_credits": cap}
    )
    assert started.status == 400, started.body
    assert "max_credits" in str(started.body["error"]), started.body
    runs = (await ecode_api("GET", f"projects/{pid}/runs")).body["runs"]
    assert runs == []
