"""Part 2: each project a server of its own, shared with its members through the hub.

The ecode service starts ``/user/{owner}/ecode-{slug}`` through the hub's API (the example's
``pre_spawn_hook`` roots it at the project's workspace) and keeps the hub's shares in step
with ecode's roles; inside, ``ProjectAuthorizer`` keeps viewers to reading.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import KEEP_TEMPLATE, MODEL_KEY, Hub

pytestmark = pytest.mark.hub

# A member's change reaches the project server within the caches of the hub's answer (5 s in
# the example) and of the server's share list (5 s): bounded polls, not sleeps.
ROLE_CHANGE_TIMEOUT = 30


def eventually(
    check: Callable[[], bool],
    what: str,
    timeout: float = ROLE_CHANGE_TIMEOUT,
    hub: Hub | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            log = hub.log_tail(40) if hub is not None else ""
            pytest.fail(f"{what} did not happen within {timeout}s\n{log}")
        time.sleep(0.25)


def project_server(hub: Hub, user: str, owner: str, name: str) -> Callable[..., httpx.Response]:
    """Requests to ``/user/{owner}/{name}/...`` (the project's server) as ``user``."""

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        return hub.client.request(
            method,
            f"{hub.url}user/{owner}/{name}/{path}",
            headers={"Authorization": f"token {hub.tokens[user]}"},
            **kwargs,
        )

    return call


def test_a_project_is_a_server_its_members_share(hub: Hub) -> None:
    created = hub.ecode(
        "POST", "projects", user="alice", body={"name": "Shared Server", "template": "flask-api"}
    )
    assert created.status_code == 201, created.text
    project = created.json()
    pid, slug = project["id"], project["slug"]
    name = f"ecode-{slug}"

    opened = hub.ecode("POST", f"projects/{pid}/server", user="alice")
    assert opened.status_code == 200, opened.text
    assert opened.json()["ready"] is True
    assert opened.json()["url"] == f"/user/alice/{name}/lab"
    # The project's server is rooted at its workspace: the template's files are at its top.
    alice = project_server(hub, "alice", "alice", name)
    listing = alice("GET", "api/contents")
    assert listing.status_code == 200, listing.text
    assert {"app.py", "requirements.txt"} <= {i["name"] for i in listing.json()["content"]}
    assert alice("GET", "lab").status_code == 200

    # A stranger: 404 from ecode, and the hub's proxy does not let him into the server.
    bob = project_server(hub, "bob", "alice", name)
    assert hub.ecode("GET", f"projects/{pid}", user="bob").status_code == 404
    assert bob("GET", "api/contents").status_code in (401, 403)

    # An editor: in, reading and writing files, running a kernel.
    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "editor"})
    assert added.status_code == 200, added.text
    eventually(lambda: bob("GET", "api/contents").status_code == 200, "bob's access", hub=hub)
    wrote = bob(
        "PUT", "api/contents/notes.md", json={"type": "file", "format": "text", "content": "hi"}
    )
    assert wrote.status_code in (200, 201), wrote.text
    assert (hub.workspace("alice", pid) / "notes.md").read_text() == "hi"
    kernel = bob("POST", "api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    assert bob("DELETE", f"api/kernels/{kernel.json()['id']}").status_code == 204

    # A viewer: reads, but writes nothing, starts no kernel, opens no terminal.
    demoted = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "viewer"})
    assert demoted.status_code == 200, demoted.text

    def viewer_refused() -> bool:
        # The same content: a write that lands before the demotion applies changes nothing.
        same = {"type": "file", "format": "text", "content": "hi"}
        return bob("PUT", "api/contents/notes.md", json=same).status_code == 403

    eventually(viewer_refused, "bob's demotion")
    assert bob("GET", "api/contents/app.py").status_code == 200
    assert bob("POST", "api/kernels", json={"name": "python3"}).status_code == 403
    assert bob("POST", "api/terminals").status_code == 403
    assert bob("DELETE", "api/contents/app.py").status_code == 403
    edit = {"type": "file", "format": "text", "content": "viewer edit"}
    assert bob("PUT", "api/contents/notes.md", json=edit).status_code == 403
    assert (hub.workspace("alice", pid) / "notes.md").read_text() == "hi"
    assert (hub.workspace("alice", pid) / "app.py").exists()

    # Removed: out of the server altogether.
    removed = hub.ecode("DELETE", f"projects/{pid}/members/bob", user="alice")
    assert removed.status_code in (200, 204), removed.text
    eventually(lambda: bob("GET", "api/contents").status_code in (401, 403), "bob's removal")


def test_the_agent_works_in_the_project_server_and_it_comes_back_after_a_stop(hub: Hub) -> None:
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Agent Server"})
    assert created.status_code == 201, created.text
    pid, slug = created.json()["id"], created.json()["slug"]
    name = f"ecode-{slug}"
    # Alice's own server is not needed: the project's files and processes are in its server.
    stopped = hub.hub_api("DELETE", "users/alice/server")
    assert stopped.status_code in (202, 204), stopped.text
    eventually(
        lambda: not (hub.hub_api("GET", "users/alice").json()["servers"].get("") or {}),
        "alice's own server stopping",
        timeout=60,
    )
    started = hub.ecode(
        "POST", f"projects/{pid}/runs", user="alice", via="service", body={"prompt": "a module"}
    )
    assert started.status_code == 201, started.text
    run = wait_run_via_service(hub, started.json()["id"])
    feed = feed_of_service(hub, run["id"])
    assert run["status"] == "completed", [(e["type"], e["data"]) for e in feed[-12:]]
    workspace = hub.workspace("alice", pid)
    assert (workspace / "app.py").is_file()

    # Culled (the idle culler stops it the same way): the files stay, the next open starts it.
    assert (
        hub.ecode("DELETE", f"projects/{pid}/server", user="alice", via="service").status_code
        == 204
    )
    eventually(
        lambda: (
            not (hub.hub_api("GET", "users/alice").json()["servers"].get(name) or {}).get("ready")
        ),
        "the project server stopping",
        timeout=60,
    )
    reopened = hub.ecode("POST", f"projects/{pid}/server", user="alice", via="service")
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["ready"] is True
    alice = project_server(hub, "alice", "alice", name)
    assert "app.py" in {i["name"] for i in alice("GET", "api/contents").json()["content"]}

    # Bring alice's own server back for whatever runs next in this module.
    hub.hub_api("POST", "users/alice/server")
    eventually(
        lambda: bool(
            (hub.hub_api("GET", "users/alice").json()["servers"].get("") or {}).get("ready")
        ),
        "alice's own server starting",
        timeout=120,
    )


def wait_run_via_service(hub: Hub, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = hub.ecode("GET", f"runs/{run_id}", user="alice", via="service")
        assert run.status_code == 200, run.text
        if run.json()["status"] in ("completed", "failed", "cancelled", "interrupted"):
            return dict(run.json())
        time.sleep(0.3)
    pytest.fail(f"run {run_id} did not end; hub log:\n{hub.log_tail()}")


def feed_of_service(hub: Hub, run_id: str) -> list[dict[str, Any]]:
    resp = hub.ecode("GET", f"runs/{run_id}/events", user="alice", via="service")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["events"])


# An app that says what it can see, run as a live release on the service's machine and as a
# preview in a project's server (both in the sandbox): the folder named by PROBE_DIR (the
# service's data, a server's runtime folder) must be out of its reach, like every credential.
PROBE_APP = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


class Probe(BaseHTTPRequestHandler):
    def do_GET(self):
        probe = os.environ["PROBE_DIR"]
        seen = {
            "version": open("version.txt").read().strip(),
            "env": dict(os.environ),
            "service_db": os.path.exists(os.path.join(probe, "ecode.sqlite")),
            "probe_dir": listing(probe),
            "probe_exists": os.path.exists(probe),
            "uid": os.getuid(),
            "cookie": self.headers.get("Cookie"),
            "authorization": self.headers.get("Authorization"),
        }
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Probe).serve_forever()
"""


def _stop_every_server(hub: Hub, user: str) -> None:
    servers = hub.hub_api("GET", f"users/{user}").json()["servers"]
    for name in servers:
        path = f"users/{user}/server" if name == "" else f"users/{user}/servers/{name}"
        stopped = hub.hub_api("DELETE", path)
        assert stopped.status_code in (202, 204), stopped.text
    eventually(
        lambda: not hub.hub_api("GET", f"users/{user}").json()["servers"],
        f"every server of {user} stopping",
        timeout=120,
    )


def test_a_live_release_runs_in_the_service_and_outlives_its_owners_servers(hub: Hub) -> None:
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Live On Hub"})
    assert created.status_code == 201, created.text
    pid, slug = created.json()["id"], created.json()["slug"]
    workspace = hub.workspace("alice", pid)
    owner = workspace.stat()
    for name, text in {
        "app.py": PROBE_APP,
        "Procfile": "web: python app.py\n",
        "version.txt": "v1\n",
    }.items():
        (workspace / name).write_text(text)
        os.chown(workspace / name, owner.st_uid, owner.st_gid)
    # The probe's one secret: where the service keeps its data (it must not be visible).
    secret = hub.ecode(
        "PUT",
        f"projects/{pid}/secrets/PROBE_DIR",
        user="alice",
        body={"value": str(hub.service_dir)},
    )
    assert secret.status_code == 200, secret.text
    public = hub.ecode("PATCH", f"projects/{pid}", user="alice", body={"visibility": "public"})
    assert public.status_code == 200, public.text

    release = hub.ecode("POST", f"projects/{pid}/releases", user="alice", body={})
    assert release.status_code == 201, release.text
    assert release.json()["status"] == "running", release.json()
    entry = release.json()["entry_url"]
    assert entry == f"/services/ecode/ecode/live/@alice/{slug}/"
    live_url = f"{hub.url}{entry.lstrip('/')}"

    def fetch() -> httpx.Response:
        # Anonymous: a public release needs no hub login.
        return httpx.get(live_url, follow_redirects=True, timeout=30)

    answer = fetch()
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["version"] == "v1"
    # The app's own variables only: none of the service's, no key of any kind.
    env = seen["env"]
    assert not {"ECODE_SECRETS_KEY", "ECODE_DATABASE_URL", "JUPYTERHUB_API_TOKEN"} & set(env)
    assert not [k for k in env if k.startswith(("ANTHROPIC", "OPENAI", "JUPYTERHUB"))]
    assert hub.secrets_key not in json.dumps(env) and MODEL_KEY not in json.dumps(env)
    # The service's database is absent; of its folder only the way to the release's own
    # folder exists inside (bubblewrap makes the mount point's parents).
    assert seen["service_db"] is False
    assert seen["probe_dir"] in (None, [], ["data"]), seen["probe_dir"]
    assert seen["uid"] != 0

    # alice logs off: every server of hers stops. The release answers on.
    _stop_every_server(hub, "alice")
    answer = fetch()
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == "v1"

    # Private again: an anonymous visitor is sent to the hub's login, not to the app.
    private = hub.ecode(
        "PATCH", f"projects/{pid}", user="alice", via="service", body={"visibility": "private"}
    )
    assert private.status_code == 200, private.text
    # (The service trusts a project's visibility for a few seconds: access_cache_s.)
    eventually(
        lambda: httpx.get(live_url, follow_redirects=False, timeout=30).status_code != 200,
        "the release turning private",
        timeout=30,
    )
    refused = httpx.get(live_url, follow_redirects=False, timeout=30)
    assert refused.status_code in (302, 303, 401, 403, 404), refused.text
    assert "v1" not in refused.text
    # alice, with her hub token, still opens it.
    mine = httpx.get(
        live_url,
        headers={"Authorization": f"token {hub.tokens['alice']}"},
        follow_redirects=True,
        timeout=30,
    )
    assert mine.status_code == 200 and mine.json()["version"] == "v1", mine.text

    hub.hub_api("POST", "users/alice/server")
    eventually(
        lambda: bool(
            (hub.hub_api("GET", "users/alice").json()["servers"].get("") or {}).get("ready")
        ),
        "alice's own server starting",
        timeout=120,
    )


def test_a_preview_runs_in_the_project_server_and_only_its_members_open_it(hub: Hub) -> None:
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Preview On Hub"})
    assert created.status_code == 201, created.text
    pid, slug = created.json()["id"], created.json()["slug"]
    name = f"ecode-{slug}"
    workspace = hub.workspace("alice", pid)
    owner = workspace.stat()
    for file, text in {
        "app.py": PROBE_APP,
        "Procfile": "web: python app.py\n",
        "version.txt": "v1\n",
    }.items():
        (workspace / file).write_text(text)
        os.chown(workspace / file, owner.st_uid, owner.st_gid)
    # A project secret reaches the app; where alice's servers keep their private files
    # (Jupyter's runtime folder, this server's preview bookkeeping among them) must not.
    runtime = hub.homes["alice"] / ".local" / "share" / "jupyter" / "runtime"
    for secret, value in {"PROBE_SECRET": "s3cret-value", "PROBE_DIR": str(runtime)}.items():
        put = hub.ecode(
            "PUT", f"projects/{pid}/secrets/{secret}", user="alice", body={"value": value}
        )
        assert put.status_code == 200, put.text

    # Asked for through alice's own server (as Lab's Preview tab does): the service checks
    # her role and has the project's server run it.
    started = hub.ecode(
        "POST", f"projects/{pid}/deployments", user="alice", body={"kind": "preview"}
    )
    assert started.status_code == 201, started.text
    preview = started.json()
    assert preview["status"] == "running", preview
    prefix = f"/user/alice/{name}/ecode/apps/@alice/{slug}/"
    assert preview["url"].startswith(prefix + "~"), preview["url"]
    assert preview["entry_url"] == prefix

    def get(path: str, user: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {hub.tokens[user]}"} if user else {}
        return hub.client.get(f"{hub.url}{path.lstrip('/')}", headers=headers, **kwargs)

    answer = get(preview["url"], "alice")
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["version"] == "v1"
    # The app's pages run in an opaque origin: they cannot script the hub's or Jupyter's pages.
    assert "sandbox" in answer.headers["Content-Security-Policy"]
    # Nothing of the hub, the server or the service in the app's reach: no token, no cookie,
    # no credential header, not the server's private folder; the project's secret, yes.
    own = {"ECODE_APP", "ECODE_BASE_PATH"}  # the app's mark and its path behind the proxy
    leaked = [k for k in seen["env"] if k.startswith(("JUPYTERHUB", "JPY_", "ECODE_"))]
    assert set(leaked) <= own, leaked
    assert seen["authorization"] is None and seen["cookie"] is None
    assert seen["env"]["PROBE_SECRET"] == "s3cret-value"
    assert (runtime / f"ecode-server-{name}" / "previews.sqlite").is_file()  # it is there,
    assert seen["probe_exists"] is False  # but not in the app's reach
    assert MODEL_KEY not in answer.text

    # The plain URL (an API client's; a browser is sent on to the keyed one): the owner gets
    # the app, a stranger is not let in at all, nor is someone without a login.
    assert get(prefix, "alice").json()["version"] == "v1"
    stranger = get(prefix, "bob", follow_redirects=False)
    assert stranger.status_code in (302, 401, 403), stranger.text
    assert "v1" not in stranger.text
    assert get(prefix, None, follow_redirects=False).status_code in (302, 401, 403)

    # A viewer opens the preview (as the project server's member) but cannot start one.
    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "viewer"})
    assert added.status_code == 200, added.text
    eventually(
        lambda: get(prefix, "bob", follow_redirects=False).status_code == 200,
        "bob opening the preview",
        hub=hub,
    )
    assert get(prefix, "bob").json()["version"] == "v1"
    refused = hub.ecode("POST", f"projects/{pid}/deployments", user="bob", body={"kind": "preview"})
    assert refused.status_code == 403, refused.text

    # The preview runs the project's folder itself (the app reads the file per request), and
    # asking again keeps it (the same deployment) instead of starting a second copy.
    (workspace / "version.txt").write_text("v2\n")
    again = hub.ecode("POST", f"projects/{pid}/deployments", user="alice", body={"kind": "preview"})
    assert again.status_code == 201, again.text
    assert again.json()["id"] == preview["id"]
    assert get(again.json()["url"], "alice").json()["version"] == "v2"


def test_jupyter_ecode_in_a_users_kernel_talks_to_the_service(hub: Hub) -> None:
    # Alice's kernel has no database and no key: the command finds her server (the kernel's
    # parent) and its token in the environment, and her server forwards to the service.
    cli = "[sys.executable, '-m', 'ecode_jupyter.cli', "
    code = (
        "import json, subprocess, sys\n"
        "def ecode(*args):\n"
        f"    return subprocess.run({cli}*args], capture_output=True, text=True,"
        " timeout=240)\n"
        "built = ecode('new', 'a small module with a test', '--name', 'From The CLI')\n"
        "print('NEW', built.returncode, built.stdout[-4000:], built.stderr[-2000:])\n"
        "listed = ecode('--json', 'projects', 'list')\n"
        "print('LIST', listed.returncode, json.dumps([p['name'] for p in json.loads(listed.stdout)]"
        " if listed.returncode == 0 else listed.stderr))\n"
    )
    out = hub.run_in_kernel("alice", code, timeout=300)
    built = out.split("NEW ", 1)[1].split("LIST ", 1)[0]
    assert built.startswith("0 "), out
    assert "completed" in built and "@alice/from-the-cli" in built, out
    listed = out.split("LIST ", 1)[1]
    assert listed.startswith("0 "), out
    assert "From The CLI" in json.loads(listed[2:].strip()), out
    # The project is the service's, as the API says.
    projects = hub.ecode("GET", "projects", user="alice", via="service").json()["projects"]
    assert "From The CLI" in [p["name"] for p in projects]


def test_an_outside_agent_uses_the_tools_through_the_service(hub: Hub) -> None:
    # An agent outside Jupyter (an IDE, Claude Code) with the user's hub token: the service's
    # MCP endpoint, ecode's roles, and the call executed in the project's server.
    import asyncio

    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from tools.conftest import text_of

    created = hub.ecode("POST", "projects", user="alice", body={"name": "Outside Agent"})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "viewer"})
    assert added.status_code == 200, added.text
    url = f"{hub.url}services/ecode/api/ecode/mcp"

    async def session(user: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        headers = {"Authorization": f"token {hub.tokens[user]}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            seen["tools"] = {t.name for t in (await client.list_tools()).tools}
            wrote = await client.call_tool(
                "write_file",
                {"project": pid, "path": "notes.md", "content": f"written by {user}\n"},
            )
            seen["write"] = (wrote.is_error, text_of(wrote))
            read = await client.call_tool("read_file", {"project": pid, "path": "notes.md"})
            seen["read"] = (read.is_error, text_of(read))
        return seen

    alice = asyncio.run(session("alice"))
    assert {"read_file", "write_file", "run_command"} <= alice["tools"]
    # Previews too: they run in the project's server (list_projects names no project yet).
    assert {"start_preview", "preview_status", "check_app"} <= alice["tools"]
    assert "list_projects" not in alice["tools"]
    assert alice["write"][0] is False, alice
    assert alice["read"][0] is False and "written by alice" in alice["read"][1], alice
    # The file is in alice's workspace, written by the project's server (her account).
    notes = hub.workspace("alice", pid) / "notes.md"
    assert notes.read_text() == "written by alice\n"
    assert notes.stat().st_uid == hub.homes["alice"].stat().st_uid

    # bob, a viewer: reads, cannot write.
    bob = asyncio.run(session("bob"))
    assert bob["write"][0] is True and "forbidden" in bob["write"][1], bob
    assert bob["read"][0] is False and "written by alice" in bob["read"][1], bob
    assert notes.read_text() == "written by alice\n"

    # The write is in the audit trail, as alice's.
    audit = hub.ecode("GET", f"audit?project={pid}", user="admin").json()["events"]
    assert ("alice", "tool.write_file") in {(e["actor"], e["action"]) for e in audit}


def test_members_and_the_agent_edit_one_document_in_one_room(hub: Hub) -> None:
    # The point of a project's own server: alice and bob open the same file in the same
    # collaboration room (the project server's), each sees the other's typing, and the
    # agent's edit (a tool call from the service) arrives live in both.
    import asyncio
    from contextlib import asynccontextmanager

    import httpx2
    from httpx_ws import aconnect_ws
    from jupyter_ydoc import YUnicode
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from pycrdt import Provider, Text
    from pycrdt.websocket.websocket import HttpxWebsocket

    created = hub.ecode("POST", "projects", user="alice", body={"name": "One Room"})
    assert created.status_code == 201, created.text
    pid, slug = created.json()["id"], created.json()["slug"]
    name = f"ecode-{slug}"
    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "editor"})
    assert added.status_code == 200, added.text
    opened = hub.ecode("POST", f"projects/{pid}/server", user="alice")
    assert opened.status_code == 200 and opened.json()["ready"], opened.text
    alice = project_server(hub, "alice", "alice", name)
    put = alice(
        "PUT", "api/contents/notes.md", json={"type": "file", "format": "text", "content": "a\n"}
    )
    assert put.status_code in (200, 201), put.text
    bob = project_server(hub, "bob", "alice", name)
    eventually(lambda: bob("GET", "api/contents/notes.md").status_code == 200, "bob in", hub=hub)
    ws_base = "ws" + hub.url[len("http") :] + f"user/alice/{name}/"

    @asynccontextmanager
    async def room(user: str, doc: YUnicode) -> Any:
        session = project_server(hub, user, "alice", name)(
            "PUT",
            "api/collaboration/session/notes.md",
            json={"format": "text", "type": "file"},
        )
        assert session.status_code in (200, 201), session.text
        info = session.json()
        room_id = f"text:file:{info['fileId']}"
        url = f"{ws_base}api/collaboration/room/{room_id}?sessionId={info['sessionId']}"
        headers = {"Authorization": f"token {hub.tokens[user]}"}
        async with (
            aconnect_ws(url, headers=headers) as ws,
            Provider(doc.ydoc, HttpxWebsocket(ws, room_id)) as provider,
        ):
            await asyncio.wait_for(provider.synced.wait(), 30)
            yield room_id

    async def until(check: Any, what: str) -> None:
        for _ in range(600):
            if check():
                return
            await asyncio.sleep(0.05)
        pytest.fail(f"never happened: {what}")

    async def agent_edit() -> tuple[bool, str]:
        headers = {"Authorization": f"token {hub.tokens['alice']}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            Client(
                streamable_http_client(f"{hub.url}services/ecode/api/ecode/mcp", http_client=http)
            ) as client,
        ):
            done = await client.call_tool(
                "edit_file",
                {"project": pid, "path": "notes.md", "old_text": "a\n", "new_text": "A\n"},
            )
            from tools.conftest import text_of

            return done.is_error, text_of(done)

    async def scenario() -> None:
        alice_doc, bob_doc = YUnicode(), YUnicode()
        async with room("alice", alice_doc) as a_room, room("bob", bob_doc) as b_room:
            assert a_room == b_room  # one room, the project server's
            await until(lambda: bob_doc.get() == "a\n", "bob sees the file")
            alice_text = alice_doc.ydoc.get("source", type=Text)
            alice_text.insert(len(str(alice_text).encode()), "typed by alice\n")
            await until(lambda: "typed by alice" in bob_doc.get(), "bob sees alice's typing")
            bob_text = bob_doc.ydoc.get("source", type=Text)
            bob_text.insert(len(str(bob_text).encode()), "typed by bob\n")
            await until(lambda: "typed by bob" in alice_doc.get(), "alice sees bob's typing")
            is_error, text = await agent_edit()
            assert not is_error, text
            assert '"live": true' in text, text  # written through the room, not behind it
            expected = "A\ntyped by alice\ntyped by bob\n"
            await until(lambda: alice_doc.get() == expected, "alice sees the agent's edit")
            await until(lambda: bob_doc.get() == expected, "bob sees the agent's edit")
        # Nobody's keystroke lost on disk either (the tool's write saves the room).
        assert (hub.workspace("alice", pid) / "notes.md").read_text() == expected

    asyncio.run(scenario())


def test_a_run_verifies_its_app_in_the_project_server(hub: Hub) -> None:
    # The agent runs in the service; its verification runs the template's tests, starts the
    # preview and opens its first page in a browser, all in the project's server.
    created = hub.ecode(
        "POST", "projects", user="alice", body={"name": "Verified App", "template": "flask-api"}
    )
    assert created.status_code == 201, created.text
    pid, slug = created.json()["id"], created.json()["slug"]
    started = hub.ecode(
        "POST", f"projects/{pid}/runs", user="alice", via="service", body={"prompt": KEEP_TEMPLATE}
    )
    assert started.status_code == 201, started.text
    run = wait_run_via_service(hub, started.json()["id"])
    feed = feed_of_service(hub, run["id"])
    assert run["status"] == "completed", [(e["type"], e["data"]) for e in feed[-12:]]
    results = {e["data"]["name"]: e["data"] for e in feed if e["type"] == "tool.result"}
    assert results["start_preview"]["ok"], results["start_preview"]
    assert results["check_app"]["ok"], results["check_app"]
    assert '"passed": true' in results["check_app"]["output"], results["check_app"]["output"]
    preview = run["summary"]["preview"]
    assert preview["status"] == "running"
    assert preview["url"].startswith(f"/user/alice/ecode-{slug}/ecode/apps/@alice/{slug}/~")
    # The app answers there, for alice, through the hub's proxy.
    answer = hub.client.get(
        f"{hub.url}{preview['url'].lstrip('/')}",
        headers={"Authorization": f"token {hub.tokens['alice']}"},
    )
    assert answer.status_code == 200, answer.text


def _execute(hub: Hub, user: str, server: str, kernel_id: str, code: str) -> str:
    """Run ``code`` in a kernel of ``server`` over its WebSocket, as Lab does; its stdout."""
    import asyncio
    import uuid

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def run() -> str:
        session = uuid.uuid4().hex
        url = (
            "ws" + hub.url[len("http") :] + f"{server}/api/kernels/{kernel_id}/channels"
            f"?session_id={session}"
        )
        conn = await websocket_connect(
            HTTPRequest(url, headers={"Authorization": f"token {hub.tokens[user]}"})
        )
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "session": session}
        header |= {"username": user, "version": "5.3", "date": ""}
        content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        conn.write_message(json.dumps({**message, "channel": "shell", "buffers": []}))
        out = ""
        try:
            while True:
                raw = await asyncio.wait_for(conn.read_message(), 60)
                assert raw is not None, "the kernel WebSocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    out += msg["content"]["text"]
                elif msg["msg_type"] == "error":
                    out += f"{msg['content']['ename']}: {msg['content']['evalue']}"
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return out
        finally:
            conn.close()

    return asyncio.run(run())


def test_an_editors_kernel_in_the_project_server_has_the_projects_secrets(hub: Hub) -> None:
    # "The project's secrets in its environment": a notebook in the project's server uses
    # them as on a server of its own, for its owner and editors (viewers run no kernels).
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Kernel Secrets"})
    assert created.status_code == 201, created.text
    pid, slug = created.json()["id"], created.json()["slug"]
    name = f"ecode-{slug}"
    secret = hub.ecode(
        "PUT", f"projects/{pid}/secrets/API_TOKEN", user="alice", body={"value": "tok-123456"}
    )
    assert secret.status_code == 200, secret.text
    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "editor"})
    assert added.status_code == 200, added.text
    opened = hub.ecode("POST", f"projects/{pid}/server", user="alice")
    assert opened.status_code == 200 and opened.json()["ready"], opened.text
    bob = project_server(hub, "bob", "alice", name)
    eventually(lambda: bob("GET", "api/contents").status_code == 200, "bob in", hub=hub)
    kernel = bob("POST", "api/kernels", json={"name": "ecode-python"})
    assert kernel.status_code == 201, kernel.text
    try:
        out = _execute(
            hub,
            "bob",
            f"user/alice/{name}",
            kernel.json()["id"],
            "import os; print(os.environ.get('API_TOKEN'), os.environ.get('JUPYTERHUB_API_TOKEN'))",
        )
        # The secret, and not the server's hub token (the kernel is sandboxed, env from
        # nothing: hub/server.py, kernels/provisioner.py).
        assert out.strip() == "tok-123456 None", out
    finally:
        bob("DELETE", f"api/kernels/{kernel.json()['id']}")
    # Only the service sends a project's environment to its server.
    for user in ("bob", "alice"):  # an editor, and the owner herself
        forged = hub.client.put(
            f"{hub.url}user/alice/{name}/api/ecode/hub/workspaces/{pid}/env",
            headers={"Authorization": f"token {hub.tokens[user]}", "X-Ecode-Project-Env": "e30="},
        )
        assert forged.status_code == 403, forged.text


def test_an_editor_opens_a_project_with_one_of_the_admins_profiles(hub: Hub) -> None:
    # The admin's profiles (the example's "standard" and "large"): an editor picks one when
    # the project's server starts, it reaches the spawner (which applies its limits), and
    # nothing else may be asked for.
    created = hub.ecode("POST", "projects", user="alice", body={"name": "Big Project"})
    assert created.status_code == 201, created.text
    pid, slug = created.json()["id"], created.json()["slug"]
    name = f"ecode-{slug}"
    added = hub.ecode("PUT", f"projects/{pid}/members/bob", user="alice", body={"role": "viewer"})
    assert added.status_code == 200, added.text
    # Creating the project started its server with the default; stop it to pick another.
    assert hub.ecode("DELETE", f"projects/{pid}/server", user="alice").status_code == 204
    eventually(
        lambda: not (hub.hub_api("GET", "users/alice").json()["servers"].get(name) or {}),
        "the project server stopping",
        timeout=60,
    )
    refused = hub.ecode("POST", f"projects/{pid}/server", user="alice", body={"profile": "huge"})
    assert refused.status_code == 400, refused.text
    assert "standard, large" in refused.json()["error"]["message"]
    viewer = hub.ecode("POST", f"projects/{pid}/server", user="bob", body={"profile": "large"})
    assert viewer.status_code in (403, 404), viewer.text
    opened = hub.ecode("POST", f"projects/{pid}/server", user="alice", body={"profile": "large"})
    assert opened.status_code == 200, opened.text
    assert opened.json()["ready"] is True
    assert opened.json()["profile"] == "large"
    assert opened.json()["profiles"] == ["standard", "large"]
    server = hub.hub_api("GET", "users/alice").json()["servers"][name]
    assert server["user_options"]["profile"] == "large"
    # A viewer still opens it (no profile asked for): the running server is kept as it is.
    again = hub.ecode("POST", f"projects/{pid}/server", user="bob")
    assert again.status_code == 200 and again.json()["profile"] == "large", again.text
