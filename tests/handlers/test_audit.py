"""The audit trail records every change, for admins only."""

from __future__ import annotations

from typing import Any


async def test_changes_are_audited_and_only_admins_read_them(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "audited"})).body["id"]
    await ecode_api("PATCH", f"projects/{pid}", body={"name": "audited 2"})
    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "editor"})
    await ecode_api("PUT", f"projects/{pid}/secrets/TOKEN", body={"value": "hunter2"})
    await ecode_api("DELETE", f"projects/{pid}")
    await ecode_api("POST", f"projects/{pid}/restore")

    assert (await ecode_api("GET", "audit", user="alice")).status == 403
    resp = await ecode_api("GET", f"audit?project={pid}", user="admin")
    assert resp.status == 200
    events = resp.body["events"]
    assert [e["action"] for e in reversed(events)] == [
        "project.create",
        "project.update",
        "member.set",
        "secret.create",
        "project.delete",
        "project.restore",
    ]
    assert {e["actor"] for e in events} == {"alice"}
    assert all(e["remote_ip"] == "127.0.0.1" for e in events)
    assert "hunter2" not in str(events)
    page = await ecode_api("GET", f"audit?limit=2&before={events[1]['id']}", user="admin")
    assert [e["id"] for e in page.body["events"]] == [events[2]["id"], events[3]["id"]]
    assert (await ecode_api("GET", "audit?limit=0", user="admin")).status == 400
