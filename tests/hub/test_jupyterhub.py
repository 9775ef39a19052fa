"""JupyterHub with the ecode service: everything shared in the service, nothing in users' servers.

Every call goes through the hub's proxy with a token the hub minted for that user: to the
user's own server (``/user/{name}/api/ecode/…``, which forwards to the service, as Lab, ``%ecode``
and ``jupyter ecode`` do) or to the service itself (``/services/ecode/api/ecode/…``). Users are
separate OS accounts; bob attacks from his own kernel.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from .conftest import MODEL_KEY, RUNS_PER_HOUR, Hub

pytestmark = pytest.mark.hub

RUN_TIMEOUT = 180


def wait_run(hub: Hub, user: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        run = hub.ecode("GET", f"runs/{run_id}", user=user)
        assert run.status_code == 200, run.text
        if run.json()["status"] in ("completed", "failed", "cancelled", "interrupted"):
            return dict(run.json())
        time.sleep(0.3)
    pytest.fail(f"run {run_id} did not end in {RUN_TIMEOUT}s; hub log:\n{hub.log_tail()}")


def feed_of(hub: Hub, user: str, run_id: str) -> list[dict[str, Any]]:
    resp = hub.ecode("GET", f"runs/{run_id}/events", user=user)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["events"])


def test_projects_live_in_the_service_and_their_files_in_the_owners_server(hub: Hub) -> None:
    created = hub.ecode(
        "POST", "projects", user="alice", body={"name": "Hub Flask", "template": "flask-api"}
    )
    assert created.status_code == 201, created.text
    project = created.json()
    pid = project["id"]
    # The hub's username, and the files in alice's own server (her OS account owns them), in
    # her server's contents root so Lab's file browser shows them.
    assert project["owner"] == "alice"
    assert project["role"] == "owner"
    workspace = hub.workspace("alice", pid)
    assert (workspace / "app.py").is_file()
    assert workspace.stat().st_uid == hub.homes["alice"].stat().st_uid
    listing = hub.client.get(
        f"{hub.url}user/alice/api/contents/ecode-projects/{pid}",
        headers={"Authorization": f"token {hub.tokens['alice']}"},
    )
    assert listing.status_code == 200, listing.text
    assert "app.py" in {item["name"] for item in listing.json()["content"]}

    # The same project through the service directly and through alice's server.
    direct = hub.ecode("GET", f"projects/{pid}", user="alice", via="service")
    assert direct.status_code == 200, direct.text
    assert direct.json()["name"] == "Hub Flask"

    # Bob's own server forwards to the same service, where the project is not his.
    listed = hub.ecode("GET", "projects", user="bob")
    assert listed.status_code == 200, listed.text
    assert pid not in [p["id"] for p in listed.json()["projects"]]
    assert hub.ecode("GET", f"projects/{pid}", user="bob").status_code == 404

    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "editor"})
    assert added.status_code == 200, added.text
    shared = {p["id"]: p for p in hub.ecode("GET", "projects", user="bob").json()["projects"]}
    assert shared[pid]["role"] == "editor"
    renamed = hub.ecode("PATCH", f"projects/{pid}", user="bob", body={"name": "Renamed By Bob"})
    assert renamed.status_code == 200, renamed.text
    assert hub.ecode("GET", f"projects/{pid}", user="alice").json()["name"] == "Renamed By Bob"

    demoted = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "viewer"})
    assert demoted.status_code == 200, demoted.text
    refused = hub.ecode("PATCH", f"projects/{pid}", user="bob", body={"name": "Viewer Edit"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    # A viewer cannot start the agent either.
    run = hub.ecode("POST", f"projects/{pid}/runs", user="bob", body={"prompt": "change it"})
    assert run.status_code == 403, run.text

    # The audit trail is for admins; hub admins are ecode admins (no ecode admin_users here),
    # whichever token scopes they hold.
    assert hub.ecode("GET", "audit", user="alice").status_code == 403
    audit = hub.ecode("GET", f"audit?project={pid}", user="admin")
    assert audit.status_code == 200, audit.text
    actions = {(e["actor"], e["action"]) for e in audit.json()["events"]}
    assert {
        ("alice", "project.create"),
        ("alice", "member.set"),
        ("bob", "project.update"),
    } <= actions


def test_hub_groups_are_project_members(hub: Hub) -> None:
    made = hub.hub_api("POST", "groups/class-a", {"users": ["bob"]})
    assert made.status_code in (201, 409), made.text
    project = hub.ecode("POST", "projects", user="alice", body={"name": "For The Class"}).json()
    pid = project["id"]
    assert hub.ecode("GET", f"projects/{pid}", user="bob").status_code == 404
    added = hub.ecode(
        "PUT", f"projects/{pid}/members/group:class-a", user="alice", body={"role": "viewer"}
    )
    assert added.status_code == 200, added.text

    def bobs_role() -> str | None:
        listed = hub.ecode("GET", "projects", user="bob").json()["projects"]
        return next((p["role"] for p in listed if p["id"] == pid), None)

    # The service reads bob's groups from the hub (cached for a few seconds).
    deadline = time.monotonic() + 30
    while bobs_role() != "viewer" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert bobs_role() == "viewer"
    refused = hub.ecode("PATCH", f"projects/{pid}", user="bob", body={"name": "Class Edit"})
    assert refused.status_code == 403, refused.text
    # The group's role is the group's: admin, not in it, still gets 404.
    assert hub.ecode("GET", f"projects/{pid}", user="admin").status_code == 404


def test_a_users_server_forwards_only_its_owners_requests(hub: Hub) -> None:
    # Bob's token does not open alice's server (the hub refuses it).
    resp = hub.ecode("GET", "projects", user="bob", server="alice")
    assert resp.status_code in (401, 403), resp.text
    # A hub admin may open alice's server, but must not act as alice on the service through it.
    resp = hub.ecode("GET", "projects", user="admin", server="alice")
    assert resp.status_code == 403, resp.text
    assert "projects" not in resp.json()
    # Nobody reaches the service without a hub identity.
    anonymous = hub.client.get(f"{hub.url}services/ecode/api/ecode/projects")
    assert anonymous.status_code in (401, 403), anonymous.text


def test_the_service_serves_nothing_of_jupyter_but_ecode(hub: Hub) -> None:
    # The service's process holds every shared secret: no contents, kernels or terminals,
    # for anyone, admins included.
    for user in ("alice", "admin"):
        headers = {"Authorization": f"token {hub.tokens[user]}"}
        for path in ("api/contents", "api/kernels", "api/sessions", "api/terminals"):
            resp = hub.client.get(f"{hub.url}services/ecode/{path}", headers=headers)
            assert resp.status_code in (403, 404), (user, path, resp.status_code, resp.text)
        started = hub.client.post(
            f"{hub.url}services/ecode/api/kernels", headers=headers, json={"name": "python3"}
        )
        assert started.status_code in (403, 404), started.text


def test_the_agent_runs_in_the_service_and_its_tools_in_the_owners_server(hub: Hub) -> None:
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Agent On Hub"})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    secret = hub.ecode(
        "PUT", f"projects/{pid}/secrets/GREETING", user="alice", body={"value": "hi-there"}
    )
    assert secret.status_code in (200, 201), secret.text
    started = hub.ecode(
        "POST", f"projects/{pid}/runs", user="alice", body={"prompt": "a greeting module"}
    )
    assert started.status_code == 201, started.text
    assert started.json()["provider"] == "anthropic"
    run = wait_run(hub, "alice", started.json()["id"])
    feed = feed_of(hub, "alice", run["id"])
    outputs = "".join(e["data"].get("text", "") for e in feed if e["type"] == "command.output")
    checks = [e["data"] for e in feed if e["type"] == "verify.result"]
    assert run["status"] == "completed", (outputs[-3000:], checks)

    workspace = hub.workspace("alice", pid)
    # The files were written by alice's server, as alice, into her contents root.
    assert (workspace / "app.py").read_text() == ('def greet(name):\n    return f"hello {name}"\n')
    assert (workspace / "app.py").stat().st_uid == hub.homes["alice"].stat().st_uid
    # The command ran there with the project's secret, which the service sent with the call.
    assert (workspace / "secret_len.txt").read_text() == str(len("hi-there"))
    # The feed was rebuilt in the service from what the owner's server reported.
    changed = {e["data"]["path"] for e in feed if e["type"] == "file.changed"}
    assert {"app.py", "tests/test_app.py"} <= changed
    assert "1 passed" in outputs
    assert "hi-there" not in json.dumps(feed)
    # The model was called by the service with the key only the service holds.
    assert hub.model.requests, "the loopback model was never called"
    assert run["usage"]["input_tokens"] > 0
    assert run["cost_micros"] > 0 if "cost_micros" in run else True


def test_bob_controls_his_own_server_and_still_reaches_nothing_shared(hub: Hub) -> None:
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Private To Alice"})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    stored = hub.ecode(
        "PUT", f"projects/{pid}/secrets/API_TOKEN", user="alice", body={"value": "alice-only-42"}
    )
    assert stored.status_code in (200, 201), stored.text
    audit_before = hub.ecode("GET", "audit?limit=500", user="admin").json()["events"]
    bob_before = hub.ecode("GET", "billing/account", user="bob").json()

    service_files = [str(p) for p in hub.service_dir.rglob("*") if p.is_file()]
    probe = f"""
import json, os, sqlite3, urllib.request, glob
found = {{}}
env = dict(os.environ)
found["env_names"] = sorted(k for k in env if k.startswith(("ECODE_", "ANTHROPIC", "OPENAI")))
found["model_key_in_env"] = any({MODEL_KEY!r} in v for v in env.values())
found["secret_in_env"] = any("alice-only-42" in v for v in env.values())
readable = []
for path in {service_files!r}:
    try:
        open(path, "rb").read(1)
        readable.append(path)
    except OSError:
        pass
found["service_files_readable"] = readable
db_uri = "file:" + {str(hub.service_dir / "ecode.sqlite")!r} + "?mode=ro"
try:
    sqlite3.connect(db_uri, uri=True).execute("select 1").fetchall()
    found["db"] = "opened"
except Exception as exc:
    found["db"] = type(exc).__name__
try:
    os.listdir({str(hub.homes["alice"])!r})
    found["alice_home"] = "listed"
except OSError as exc:
    found["alice_home"] = type(exc).__name__
# Other processes' environments (the hub's, the service's, alice's server's).
leaked = []
for environ in glob.glob("/proc/[0-9]*/environ"):
    try:
        data = open(environ, "rb").read()
    except OSError:
        continue
    if {MODEL_KEY!r}.encode() in data or b"ECODE_SECRETS_KEY" in data:
        leaked.append(environ)
found["environ_leaks"] = leaked
# Bob's own token: the service answers as bob, nothing more.
base = os.environ["ECODE_SERVICE_URL"] + "api/ecode/"
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={{"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"],
                  "Content-Type": "application/json"}})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
found["get_project"] = call("GET", "projects/{pid}")
found["join"] = call("PUT", "projects/{pid}/members/bob", {{"role": "owner"}})
found["secrets"] = call("GET", "projects/{pid}/secrets")
found["grant"] = call("POST", "billing/grants", {{"user": "bob", "credits": 1000}})
found["audit"] = call("GET", "audit")
print(json.dumps(found))
"""
    out = hub.run_in_kernel("bob", probe)
    found = json.loads(out.strip().splitlines()[-1]) if out.strip().startswith("{") else None
    assert found is not None, out
    assert found["env_names"] == ["ECODE_SERVICE_URL"], found
    assert not found["model_key_in_env"]
    assert not found["secret_in_env"]
    assert found["service_files_readable"] == []
    assert found["db"] != "opened"
    assert found["alice_home"] == "PermissionError"
    assert found["environ_leaks"] == []
    assert found["get_project"] == 404
    assert found["join"] == 404
    assert found["secrets"] == 404
    assert found["grant"] == 403
    assert found["audit"] == 403

    # Afterwards: alice's project is still hers alone, nothing was granted or recorded.
    assert hub.ecode("GET", f"projects/{pid}", user="bob").status_code == 404
    members = hub.ecode("GET", f"projects/{pid}/members", user="alice").json()
    assert [m["user"] for m in members["members"]] == ["alice"]
    assert hub.ecode("GET", "billing/account", user="bob").json() == bob_before
    audit_after = hub.ecode("GET", "audit?limit=500", user="admin").json()["events"]
    assert [e for e in audit_after if e["actor"] == "bob"] == [
        e for e in audit_before if e["actor"] == "bob"
    ]


def test_credits_are_per_user_and_admins_grant_and_see_usage(hub: Hub) -> None:
    # The admin caps alice's spending at nothing: her runs stop, bob's do not.
    cut = hub.ecode("PUT", "billing/budgets", user="admin", body={"user": "alice", "budget": 0})
    assert cut.status_code == 200, cut.text
    project = hub.ecode("POST", "projects", user="alice", body={"name": "Out Of Credits"}).json()
    refused = hub.ecode(
        "POST", f"projects/{project['id']}/runs", user="alice", body={"prompt": "a module"}
    )
    if refused.status_code == 201:
        run = wait_run(hub, "alice", refused.json()["id"])
        feed = feed_of(hub, "alice", run["id"])
        assert run["status"] == "failed", run
        assert feed[-1]["type"] == "run.failed"
        assert (
            "credit" in json.dumps(feed[-1]["data"]).lower()
            or "budget" in json.dumps(feed[-1]["data"]).lower()
        ), feed[-1]
    else:
        assert refused.status_code == 402, refused.text
    assert not (hub.workspace("alice", project["id"]) / "app.py").exists()

    bobs = hub.ecode("POST", "projects", user="bob", body={"name": "Bob Has Credits"}).json()
    started = hub.ecode(
        "POST", f"projects/{bobs['id']}/runs", user="bob", body={"prompt": "a module"}
    )
    assert started.status_code == 201, started.text
    assert wait_run(hub, "bob", started.json()["id"])["status"] == "completed"

    # Users cannot grant or lift caps; the admin can, and alice runs again.
    grant = {"user": "alice", "credits": 5}
    assert hub.ecode("POST", "billing/grants", user="alice", body=grant).status_code == 403
    lift = {"user": "alice", "budget": None}
    assert hub.ecode("PUT", "billing/budgets", user="alice", body=lift).status_code == 403
    before = hub.ecode("GET", "billing/account", user="alice").json()
    granted = hub.ecode(
        "POST", "billing/grants", user="admin", body={"user": "alice", "credits": 2}
    )
    assert granted.status_code == 201, granted.text
    assert hub.ecode("PUT", "billing/budgets", user="admin", body=lift).status_code == 200
    after = hub.ecode("GET", "billing/account", user="alice").json()
    assert after["balance_micros"] == before["balance_micros"] + 2_000_000
    again = hub.ecode(
        "POST", f"projects/{project['id']}/runs", user="alice", body={"prompt": "a module"}
    )
    assert again.status_code == 201, again.text
    assert wait_run(hub, "alice", again.json()["id"])["status"] == "completed"

    # Usage across users is the admin's to see; each user sees their own.
    usage = hub.ecode("GET", "billing/usage?user=*&group=day", user="admin")
    assert usage.status_code == 200, usage.text
    mine = hub.ecode("GET", "billing/usage", user="bob")
    assert mine.status_code == 200, mine.text
    assert usage.json()["total"] != mine.json()["total"]
    assert hub.ecode("GET", "billing/usage?user=*", user="bob").status_code == 403


def test_users_servers_refuse_to_start_with_shared_secrets(hub: Hub) -> None:
    """The extension itself refuses, not only the example config: run it as bob would."""
    import subprocess
    import sys

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(hub.service_dir),
        "JUPYTERHUB_API_TOKEN": "x",
        "JUPYTERHUB_USER": "bob",
        "ECODE_SERVICE_URL": "http://127.0.0.1:9/services/ecode/",
        "ECODE_SECRETS_KEY": "leaked",
        "JUPYTER_RUNTIME_DIR": str(hub.service_dir / "refuse-runtime"),
        "JUPYTER_DATA_DIR": str(hub.service_dir / "refuse-data"),
        "JUPYTER_CONFIG_DIR": str(hub.service_dir / "refuse-config"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--ServerApp.jpserver_extensions={'ecode_jupyter': True}",
            "--port=0",
            "--allow-root",
            "--ServerApp.token=x",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "must hold nothing shared" in proc.stderr
    assert "ECODE_SECRETS_KEY" in proc.stderr
    assert "leaked" not in proc.stderr


def test_the_service_rate_limits_runs_per_user(hub: Hub) -> None:
    project = hub.ecode("POST", "projects", user="admin", body={"name": "Rate Limited"}).json()
    answers = []
    for _ in range(RUNS_PER_HOUR + 1):
        resp = hub.ecode(
            "POST", f"projects/{project['id']}/runs", user="admin", body={"prompt": "a module"}
        )
        answers.append(resp)
        if resp.status_code == 429:
            break
        # One run at a time on a project: let each end before the next starts.
        assert resp.status_code == 201, resp.text
        wait_run(hub, "admin", resp.json()["id"])
    limited = answers[-1]
    # Through the admin's own server, the service's answer comes back as it is.
    assert limited.status_code == 429, [r.status_code for r in answers]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Per user: alice is not limited by the admin's runs.
    mine = hub.ecode("GET", "projects", user="alice")
    assert mine.status_code == 200
