from __future__ import annotations

from typing import Any

from .feed import events, of_type, wait_final


async def test_project_with_prompt_builds_flask_offline(
    ecode_api: Any, ecode_workspace_root: Any
) -> None:
    resp = await ecode_api(
        "POST", "projects", body={"name": "Todo", "prompt": "a Flask todo API with tests"}
    )
    assert resp.status == 201, resp.body
    run = resp.body["run"]
    assert run["provider"] == "offline"
    final = await wait_final(ecode_api, run["id"])
    feed = await events(ecode_api, run["id"])
    print([ (e["seq"], e["type"]) for e in feed])
    print(final)
    assert final["status"] == "completed", final
