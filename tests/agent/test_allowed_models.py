"""An admin's model allow-list holds on the server for every way in: REST runs (what Lab's
picker, %ecode and `jupyter ecode --server` send), project creation with a prompt, continue,
and the picker's own list; hub groups add models; offline stays allowed."""

from __future__ import annotations

from typing import Any

import pytest

from ecode_jupyter.agent.manager import AgentManager, AgentSettings
from ecode_jupyter.exceptions import ModelNotAllowed
from ecode_jupyter.identity import EcodeUser

ALLOWED = ["claude-haiku-4-5", "openai:gpt-5-mini"]


@pytest.fixture
def ecode_extra_config(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # Keys for both providers (never used: every refusal happens before a model call).
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-never-used")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-used")
    return {"EcodeApp": {"allowed_models": ALLOWED}}


async def test_the_picker_lists_what_is_allowed_and_the_default_is_one_of_them(
    ecode_api: Any,
) -> None:
    models = await ecode_api("GET", "agent/models")
    assert models.status == 200, models.body
    assert models.body["allowed"] == ALLOWED
    # The configured default (claude-sonnet-4-6) is not allowed: the first allowed model is.
    assert models.body["default"] == {"provider": "anthropic", "model": "claude-haiku-4-5"}


@pytest.mark.parametrize("model", ["claude-opus-4-1", "gpt-5", "anthropic:claude-sonnet-4-6"])
async def test_a_model_outside_the_list_is_refused_on_every_way_in(
    ecode_api: Any, model: str
) -> None:
    project = (await ecode_api("POST", "projects", body={"name": "Allowed"})).body
    run = await ecode_api(
        "POST", f"projects/{project['id']}/runs", body={"prompt": "build it", "model": model}
    )
    assert run.status == 403, run.body
    assert run.body["error"]["code"] == "model_not_allowed"
    assert "claude-haiku-4-5" in run.body["error"]["message"]
    # A new project with a prompt (which starts a run) is refused the same way, and the
    # refusal leaves no project behind.
    before = (await ecode_api("GET", "projects")).body["projects"]
    made = await ecode_api(
        "POST", "projects", body={"name": "With Prompt", "prompt": "build it", "model": model}
    )
    assert made.status == 403, made.body
    after = (await ecode_api("GET", "projects")).body["projects"]
    assert len(after) == len(before)


async def test_offline_is_always_allowed(ecode_api: Any) -> None:
    project = (await ecode_api("POST", "projects", body={"name": "Offline Ok"})).body
    run = await ecode_api(
        "POST",
        f"projects/{project['id']}/runs",
        body={"prompt": "a flask todo api", "model": "offline"},
    )
    assert run.status == 201, run.body
    assert run.body["provider"] == "offline"
    await ecode_api("POST", f"runs/{run.body['id']}/cancel")


async def test_hub_groups_add_models(ecode_app: Any) -> None:
    agent: AgentManager = ecode_app.ecode.extras["agent"]
    agent.settings = AgentSettings(
        allowed_models=("claude-haiku-4-5",),
        allowed_models_by_group={"gpu-course": ("claude-opus-4-1",)},
    )
    student = EcodeUser("s", "s", False, groups=("gpu-course",))
    other = EcodeUser("o", "o", False)
    assert (await agent.choose(student, "claude-opus-4-1")).model == "claude-opus-4-1"
    with pytest.raises(ModelNotAllowed):
        await agent.choose(other, "claude-opus-4-1")
    assert agent.allowed_models(student) == ["claude-haiku-4-5", "claude-opus-4-1"]
