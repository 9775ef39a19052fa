"""The JupyterHub deployment: many users, each on their own server, sharing one ecode database.

Every call goes through the hub's proxy to ``/user/{name}/api/ecode/…`` with a token the hub
minted for that user, so identities (and the hub's admin flag) come from the hub.
"""

from __future__ import annotations

import pytest

from .conftest import Hub

pytestmark = pytest.mark.hub


def test_users_on_their_own_servers_share_projects_through_one_database(hub: Hub) -> None:
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Shared Hub Demo"})
    assert created.status_code == 201, created.text
    project = created.json()
    pid = project["id"]
    # The hub's username, not the server's owner_name (conftest.STOCK_OWNER) or a random
    # "Anonymous" login.
    assert project["owner"] == "alice"
    assert project["url"] == f"/ecode/@alice/{project['slug']}"
    assert project["role"] == "owner"
    assert (hub.workspace_root / pid).is_dir()

    # Bob's server reads the same database, but the project is not his.
    listed = hub.ecode("GET", "projects", user="bob")
    assert listed.status_code == 200, listed.text
    assert pid not in [p["id"] for p in listed.json()["projects"]]
    stranger = hub.ecode("GET", f"projects/{pid}", user="bob")
    assert stranger.status_code == 404, stranger.text

    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "editor"})
    assert added.status_code == 200, added.text
    assert added.json()["role"] == "editor"

    listed = hub.ecode("GET", "projects", user="bob")
    shared = {p["id"]: p for p in listed.json()["projects"]}
    assert pid in shared
    assert shared[pid]["owner"] == "alice"
    assert shared[pid]["role"] == "editor"

    renamed = hub.ecode("PATCH", f"projects/{pid}", user="bob", body={"name": "Renamed By Bob"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed By Bob"
    # Alice's server sees the rename made on bob's server.
    mine = hub.ecode("GET", f"projects/{pid}", user="alice")
    assert mine.json()["name"] == "Renamed By Bob"

    demoted = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "viewer"})
    assert demoted.status_code == 200, demoted.text
    refused = hub.ecode("PATCH", f"projects/{pid}", user="bob", body={"name": "Viewer Edit"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    assert hub.ecode("GET", f"projects/{pid}", user="bob").json()["name"] == "Renamed By Bob"

    # The audit trail is for admins; hub admins are ecode admins (no ecode admin_users here).
    assert hub.ecode("GET", "audit", user="alice").status_code == 403
    audit = hub.ecode("GET", f"audit?project={pid}", user="admin")
    assert audit.status_code == 200, audit.text
    actions = {(e["actor"], e["action"]) for e in audit.json()["events"]}
    assert {
        ("alice", "project.create"),
        ("alice", "member.set"),
        ("bob", "project.update"),
    } <= actions
    assert {actor for actor, _ in actions} == {"alice", "bob"}


def test_a_users_token_does_not_open_another_users_server(hub: Hub) -> None:
    # Each person's ecode API is behind their own server; the hub keeps others out of it.
    # (The hub's identity provider reports "not allowed here" as no user at all, so the
    # refusal may read as 401 rather than jupyter_server's 403; either way nothing leaks.)
    resp = hub.ecode("GET", "projects", user="bob", server="alice")
    assert resp.status_code in (401, 403), resp.text
    assert "projects" not in resp.json()
    assert "error" in resp.json()
    # A hub admin may reach any server (the hub grants admins access:servers).
    resp = hub.ecode("GET", "projects", user="admin", server="alice")
    assert resp.status_code == 200, resp.text
