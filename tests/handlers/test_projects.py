"""Projects over REST against a real server: the lifecycle, roles, and bad input."""

from __future__ import annotations

import contextlib
from typing import Any


async def test_create_list_rename_delete_restore(ecode_api: Any) -> None:
    created = await ecode_api("POST", "projects", body={"name": "Flask Todo API"})
    assert created.status == 201, created.body
    project = created.body
    assert project["slug"] == "flask-todo-api"
    assert project["owner"] == "alice"
    assert project["role"] == "owner"
    pid = project["id"]

    listed = await ecode_api("GET", "projects")
    assert [p["id"] for p in listed.body["projects"]] == [pid]

    renamed = await ecode_api("PATCH", f"projects/{pid}", body={"name": "Todo API v2"})
    assert renamed.status == 200
    assert renamed.body["name"] == "Todo API v2"
    # The slug is a stable URL; renaming does not move it.
    assert renamed.body["slug"] == "flask-todo-api"

    resolved = await ecode_api("GET", "by-slug/@alice/flask-todo-api")
    assert resolved.status == 200 and resolved.body["id"] == pid

    deleted = await ecode_api("DELETE", f"projects/{pid}")
    assert deleted.status == 200 and deleted.body["deleted_at"]
    assert (await ecode_api("GET", "projects")).body["projects"] == []
    assert (await ecode_api("GET", f"projects/{pid}")).status == 404
    trash = await ecode_api("GET", "projects?deleted=true")
    assert [p["id"] for p in trash.body["projects"]] == [pid]

    restored = await ecode_api("POST", f"projects/{pid}/restore")
    assert restored.status == 200 and restored.body["deleted_at"] is None
    assert [p["id"] for p in (await ecode_api("GET", "projects")).body["projects"]] == [pid]


async def test_workspace_folder_is_created(ecode_api: Any, ecode_workspace_root: Any) -> None:
    project = (await ecode_api("POST", "projects", body={"name": "ws"})).body
    assert (ecode_workspace_root / project["id"]).is_dir()


async def test_slug_clash_is_409_with_a_suggestion(ecode_api: Any) -> None:
    first = await ecode_api("POST", "projects", body={"name": "demo", "slug": "demo"})
    assert first.status == 201
    clash = await ecode_api("POST", "projects", body={"name": "demo 2", "slug": "demo"})
    assert clash.status == 409
    assert clash.error_code == "slug_taken"
    assert clash.body["error"]["details"]["suggestion"] == "demo-2"
    # Without an explicit slug the name's slug is made unique automatically.
    auto = await ecode_api("POST", "projects", body={"name": "demo"})
    assert auto.status == 201 and auto.body["slug"] == "demo-2"
    # Another owner can have the same slug.
    other = await ecode_api("POST", "projects", user="bob", body={"name": "demo", "slug": "demo"})
    assert other.status == 201


async def test_roles_viewer_cannot_rename_stranger_gets_404(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "shared"})).body["id"]
    put = await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    assert put.status == 200 and put.body["role"] == "viewer"

    seen = await ecode_api("GET", f"projects/{pid}", user="bob")
    assert seen.status == 200 and seen.body["role"] == "viewer"
    rename = await ecode_api("PATCH", f"projects/{pid}", user="bob", body={"name": "mine"})
    assert rename.status == 403 and rename.error_code == "forbidden"
    assert (await ecode_api("DELETE", f"projects/{pid}", user="bob")).status == 403

    for method, path, body in [
        ("GET", f"projects/{pid}", None),
        ("PATCH", f"projects/{pid}", {"name": "x"}),
        ("DELETE", f"projects/{pid}", None),
        ("GET", f"projects/{pid}/members", None),
        ("PUT", f"projects/{pid}/members/carol", {"role": "owner"}),
        ("GET", "by-slug/@alice/shared", None),
    ]:
        resp = await ecode_api(method, path, user="carol", body=body)
        assert resp.status == 404, (method, path, resp.body)
    assert (await ecode_api("GET", f"projects/{pid}")).body["name"] == "shared"

    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "editor"})
    rename = await ecode_api("PATCH", f"projects/{pid}", user="bob", body={"name": "ours"})
    assert rename.status == 200 and rename.body["name"] == "ours"
    # Editors still cannot manage members.
    grant = await ecode_api(
        "PUT", f"projects/{pid}/members/carol", user="bob", body={"role": "viewer"}
    )
    assert grant.status == 403


async def test_last_owner_cannot_leave(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "solo"})).body["id"]
    leave = await ecode_api("DELETE", f"projects/{pid}/members/alice")
    assert leave.status == 409
    demote = await ecode_api("PUT", f"projects/{pid}/members/alice", body={"role": "viewer"})
    assert demote.status == 409
    members = await ecode_api("GET", f"projects/{pid}/members")
    assert members.body["members"][0]["role"] == "owner"


async def test_bad_input_gets_clear_4xx_and_changes_nothing(ecode_api: Any) -> None:
    cases: list[tuple[dict[str, Any], int]] = [
        ({"raw": b"{not json"}, 400),
        ({"raw": b"[1, 2]"}, 400),
        ({"body": {"name": "x" * (10 * 1024 * 1024)}}, 413),
        ({"body": {"name": "x" * 101}}, 400),
        ({"body": {"name": ""}}, 400),
        ({"body": {"name": "   "}}, 400),
        ({"body": {"name": 42}}, 400),
        ({"body": {"name": "ok\u202eevil"}}, 400),
        ({"body": {"name": "ok\x00"}}, 400),
        ({"body": {}}, 400),
        ({"body": {"name": "ok", "slug": "../x"}}, 400),
        ({"body": {"name": "ok", "slug": "con"}}, 400),
        ({"body": {"name": "ok", "slug": "A B"}}, 400),
        ({"body": {"name": "ok", "slug": "-x"}}, 400),
        ({"body": {"name": "ok", "template": "no-such-template"}}, 404),
        ({"body": {"name": "ok", "owner": "bob"}}, 400),
    ]
    for kwargs, status in cases:
        resp = await ecode_api("POST", "projects", **kwargs)
        assert resp.status == status, (str(kwargs)[:80], resp.status, resp.body)
        assert set(resp.body) == {"error"}, resp.body
        assert resp.body["error"]["message"]
        assert "Traceback" not in resp.body["error"]["message"]
    assert (await ecode_api("GET", "projects")).body["projects"] == []


async def test_unicode_names_are_kept_and_slugged(ecode_api: Any) -> None:
    resp = await ecode_api("POST", "projects", body={"name": "Café Überblick 数据"})
    assert resp.status == 201
    assert resp.body["name"] == "Café Überblick 数据"
    assert resp.body["slug"] == "cafe-uberblick"


async def test_patch_rejects_unknown_fields_and_bad_ids(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    bad = await ecode_api("PATCH", f"projects/{pid}", body={"owner": "bob"})
    assert bad.status == 400
    assert (await ecode_api("GET", "projects/..%2F..%2Fetc")).status == 404
    assert (await ecode_api("GET", "projects/" + "a" * 500)).status == 404


async def test_unknown_endpoint_is_a_json_404(ecode_api: Any) -> None:
    resp = await ecode_api("GET", "no/such/thing")
    assert resp.status == 404 and resp.error_code == "not_found"
    assert (await ecode_api("GET", "no/such/thing", user=None)).status == 401


async def test_project_json_names_its_folder_for_the_file_browser(
    ecode_api: Any, jp_root_dir: Any, ecode_workspace_root: Any
) -> None:
    project = (await ecode_api("POST", "projects", body={"name": "where"})).body
    # The test workspaces live outside the server's root dir: no browsable path then.
    expected = None
    with contextlib.suppress(ValueError):
        expected = (ecode_workspace_root / project["id"]).relative_to(jp_root_dir).as_posix()
    assert project["workspace_path"] == expected
    listed = (await ecode_api("GET", "projects")).body["projects"]
    assert listed[0]["workspace_path"] == expected


async def test_agent_models_names_the_default_and_providers(ecode_api: Any) -> None:
    resp = await ecode_api("GET", "agent/models")
    assert resp.status == 200, resp.body
    assert "offline" in resp.body["providers"]
    assert set(resp.body["default"]) == {"provider", "model"}
