"""kill -9 of the server, then a restart on another port with the same data: no orphan app,
no stale row, no open hold, no temporary file of an interrupted write.

A real server runs as a subprocess (a hub spawner's server gets a new port at every start),
with a preview, a live release and an agent run whose model call is in flight when the
server is killed. Both launch paths: the sandbox (bubblewrap where the host has it) and none.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.testing import AnthropicLoopback, text_turn
from ecode_jupyter.testing.server_process import EcodeServerProcess

# Answers every path with "up"; its file name (in its command line) is unique per test.
APP = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Up(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"up")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Up).serve_forever()
"""


class Server(EcodeServerProcess):
    """The server under test, with a model key for the loopback and the sandbox setting."""

    def __init__(self, root: Path, database_url: str, model_url: str, sandbox: str) -> None:
        super().__init__(
            root,
            database_url=database_url,
            owner="crash",
            args=[f"--EcodeApp.sandbox={sandbox}", "--EcodeApp.agent_offline_installs=False"],
            env={"ANTHROPIC_API_KEY": "sk-ant-loopback", "ANTHROPIC_BASE_URL": model_url},
            log_level="INFO",
        )

    def live_text(self, slug: str) -> str | None:
        """What the live release answers through the proxy (the entry URL redirects to the
        keyed one), or None while it does not."""
        path, auth = f"/ecode/live/@crash/{slug}/", True
        for _ in range(3):
            status, headers, body = self.request("GET", path, auth=auth)
            if status == 200:
                return body.decode()
            location = headers.get("Location") or headers.get("location")
            if status != 302 or not location:
                return None
            path, auth = location, False
        return None


def until(check: Any, what: str, server: Server | None = None, limit_s: float = 90.0) -> None:
    """Wait until ``check()`` is true; fail saying ``what`` (a bound, not a timing)."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}" + (f"\n{server.tail()}" if server else ""))
        time.sleep(0.1)


def app_copies(token: str) -> dict[str, int]:
    """Running Python processes of the test's app, by kind (``apps``: the preview, ``live``:
    the release), read from /proc: the base path each was started with says which."""
    counts = {"apps": 0, "live": 0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if not os.path.basename(argv[0]).startswith(b"python"):
                continue
            if not any(token.encode() in arg for arg in argv):
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        found = re.search(rb"(?:^|\0)ECODE_BASE_PATH=[^\0]*/ecode/(apps|live)/", environ)
        if found:
            counts[found.group(1).decode()] += 1
    return counts


def kill_copies(token: str) -> None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline:
                with contextlib.suppress(OSError):
                    os.kill(int(entry), signal.SIGKILL)


@pytest.fixture
def model() -> Iterator[AnthropicLoopback]:
    """A model whose answer stalls after its first event: the call stays in flight."""
    server = AnthropicLoopback([text_turn("done", event_delay=60)])
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("sandbox", ["auto", "off"])
def test_kill_9_then_restart_leaves_no_orphan_app_no_stale_row_no_open_hold(
    tmp_path: Path,
    ecode_database_url: str,
    model: AnthropicLoopback,
    sandbox: str,
) -> None:
    loopback = model
    token = f"app_{secrets.token_hex(6)}"
    first = Server(tmp_path, ecode_database_url, loopback.url, sandbox)
    second: Server | None = None
    try:
        status, project = first.api("POST", "projects", {"name": "Crash"})
        assert status == 201, project
        pid, slug = project["id"], project["slug"]
        workspace = tmp_path / "work" / "ecode-projects" / pid
        (workspace / f"{token}.py").write_text(APP)
        (workspace / "Procfile").write_text(f"web: python {token}.py\n")

        status, release = first.api("POST", f"projects/{pid}/releases", {})
        assert status == 201 and release["status"] == "running", release
        status, preview = first.api("POST", f"projects/{pid}/deployments", {"kind": "preview"})
        assert status in (200, 201) and preview["status"] == "running", preview
        assert first.live_text(slug) == "up"
        assert app_copies(token) == {"apps": 1, "live": 1}
        status, run = first.api("POST", f"projects/{pid}/runs", {"prompt": "build it"})
        assert status in (200, 201, 202), run
        # The run's first model call is in flight: its credits are held.
        until(lambda: len(loopback.requests) >= 1, "the run never called the model", first)
        account = first.api("GET", "billing/account")[1]
        assert account["open_reservations"] == 1 and account["reserved_micros"] > 0

        first.kill()
        # The apps die with their server (the sandbox's PID namespace, or the parent-death
        # signal without one), before anything restarts.
        until(lambda: app_copies(token) == {"apps": 0, "live": 0}, "apps outlived the server")
        # A write the crash cut short, as the writer names its temporary file.
        leftover = workspace / f".notes.txt.{first.proc.pid}.k2j4h6g8.ecode.tmp"
        leftover.write_text("half a file")

        second = Server(tmp_path, ecode_database_url, loopback.url, sandbox)
        assert second.port != first.port
        # The live release answers again, from a process of the new server.
        until(lambda: second.live_text(slug) == "up", "the live release was not resumed", second)
        # The preview of the killed server is not running any more, anywhere.
        until(
            lambda: app_copies(token) == {"apps": 0, "live": 1},
            f"app processes after the restart: {app_copies(token)}",
            second,
        )
        status, listed = second.api("GET", f"projects/{pid}/deployments")
        rows = {d["id"]: d for d in listed["deployments"]}
        assert rows[preview["id"]]["status"] != "running"
        assert rows[release["id"]]["status"] != "running"

        status, again = second.api("POST", f"projects/{pid}/deployments", {"kind": "preview"})
        assert again["status"] == "running" and again["id"] != preview["id"], again
        assert app_copies(token) == {"apps": 1, "live": 1}

        status, interrupted = second.api("GET", f"runs/{run['id']}")
        assert interrupted["status"] == "interrupted"
        account = second.api("GET", "billing/account")[1]
        assert account["open_reservations"] == 0 and account["reserved_micros"] == 0
        until(lambda: not leftover.exists(), "the interrupted write's file stayed", second)
    finally:
        if second is not None:
            second.stop()
        if first.proc.poll() is None:
            first.stop()
        kill_copies(token)
