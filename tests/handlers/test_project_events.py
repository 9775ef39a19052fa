"""Project changes reach Jupyter's event bus (which Lab's sidebar follows), whoever made them."""

from __future__ import annotations

import asyncio
from typing import Any

from ecode_jupyter.projects.events import SCHEMA_ID


async def test_every_change_of_a_project_is_an_event_on_the_bus(
    ecode_api: Any, jp_serverapp: Any
) -> None:
    seen: list[dict[str, Any]] = []

    async def listener(*, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=SCHEMA_ID, listener=listener)
    made = await ecode_api("POST", "projects", body={"name": "listed"})
    pid = made.body["id"]
    assert (await ecode_api("PATCH", f"projects/{pid}", body={"name": "renamed"})).status == 200
    assert (await ecode_api("DELETE", f"projects/{pid}")).status == 200
    assert (await ecode_api("POST", f"projects/{pid}/restore")).status == 200
    # A refused change (bad input) is no change: no event.
    assert (await ecode_api("PATCH", f"projects/{pid}", body={"name": ""})).status == 400
    wanted = [
        {"action": a, "project_id": pid} for a in ("created", "changed", "deleted", "restored")
    ]
    for _ in range(500):  # listeners run as tasks after each emit
        if len(seen) >= len(wanted):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert seen == wanted
