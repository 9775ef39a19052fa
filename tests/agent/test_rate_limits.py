"""Rate limits on runs and their model calls, through a real server's REST API."""

from __future__ import annotations

from typing import Any

import pytest

from ecode_jupyter.ratelimit import RateLimiter
from ecode_jupyter.testing import text_turn, tool_turn

from .feed import events, of_type, wait_final

# 30.25 s into an hour: refusals say Retry-After 3570 whenever the test runs.
FROZEN_NOW = 1_800_000_000 + 30.25


@pytest.fixture
def agent_config() -> dict[str, Any]:
    return {
        "agent_offline_installs": False,
        "agent_max_wall_time_s": 120.0,
        "rate_limits": {"runs": "2/hour", "model_calls": "1/hour"},
    }


@pytest.fixture(autouse=True)
def frozen_limits(ecode_app: Any) -> RateLimiter:
    """The server's limiter, on a clock that stands still: no window ends during a test."""
    limiter = ecode_app.ecode.extras["limits"]
    assert isinstance(limiter, RateLimiter)
    limiter.clock = lambda: FROZEN_NOW
    return limiter


async def test_starting_runs_past_the_limit_is_429_with_retry_after(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "limited"})).body["id"]
    for _ in range(2):
        started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a todo app"})
        assert started.status == 201, started.body
        await wait_final(ecode_api, started.body["id"])

    refused = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a todo app"})
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "3570"
    assert refused.body["error"]["code"] == "rate_limited"
    assert "too many agent runs: at most 2 per hour" in refused.body["error"]["message"]
    assert refused.body["error"]["details"]["retry_after"] == 3570
    # The refused run left nothing behind.
    runs = (await ecode_api("GET", f"projects/{pid}/runs")).body["runs"]
    assert len(runs) == 2

    # A new project with a prompt is refused before the project exists.
    again = await ecode_api("POST", "projects", body={"name": "second", "prompt": "a todo app"})
    assert again.status == 429 and again.headers["Retry-After"] == "3570"
    names = [p["name"] for p in (await ecode_api("GET", "projects")).body["projects"]]
    assert names == ["limited"]

    # Others have limits of their own.
    bob = (await ecode_api("POST", "projects", user="bob", body={"name": "b"})).body["id"]
    resp = await ecode_api("POST", f"projects/{bob}/runs", user="bob", body={"prompt": "x"})
    assert resp.status == 201, resp.body
    await wait_final(ecode_api, resp.body["id"], user="bob")


async def test_a_run_past_its_model_call_limit_fails_saying_so(
    ecode_api: Any, ecode_anthropic_loopback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ecode_anthropic_loopback(
        [tool_turn("list_files", {"path": "."}), text_turn("never sent")]
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "build"})).body
    final = await wait_final(ecode_api, run["id"])
    assert (final["status"], final["reason"]) == ("failed", "rate_limited")
    failed = of_type(await events(ecode_api, run["id"]), "run.failed")[0]["data"]
    assert failed["reason"] == "rate_limited"
    assert "too many model calls: at most 1 per hour" in failed["message"]
    assert "try again in 3570 s" in failed["message"]
    # The first call went to the model; the second never left the server.
    assert len(server.requests) == 1
