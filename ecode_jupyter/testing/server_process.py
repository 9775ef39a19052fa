"""A real ``jupyter server`` with the ecode extension, as a subprocess of the test.

For what an in-process test server cannot show: a server killed with SIGKILL and started
again on the same data, or a benchmark measuring the server's own process. Jupyter's folders
live under ``root``, so runs are hermetic; ``api`` speaks to ``/api/ecode/`` with the token.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EcodeServerProcess:
    """``python -m jupyter_server`` on a free port of 127.0.0.1, rooted at ``root/work``,
    its workspaces in ``root/work/ecode-projects``; waits until the ecode API answers."""

    def __init__(
        self,
        root: Path,
        *,
        database_url: str,
        owner: str = "ecode",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_level: str = "WARN",
        start_timeout_s: float = 90.0,
    ) -> None:
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        environ = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(root / "config"),
            "JUPYTER_DATA_DIR": str(root / "data"),
            "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            **(env or {}),
        }
        self.workspace_root = root / "work" / "ecode-projects"
        (root / "work").mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--port={self.port}",
            "--ip=127.0.0.1",
            "--no-browser",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root / 'work'}",
            "--ServerApp.jpserver_extensions={'ecode_jupyter': True}",
            f"--EcodeApp.database_url={database_url}",
            f"--EcodeApp.workspace_root={self.workspace_root}",
            f"--EcodeApp.owner_name={owner}",
            f"--ServerApp.log_level={log_level}",
            "--allow-root",
            *args,
        ]
        # One log per start: a restarted server on the same root keeps the first one's.
        self.log_path = root / f"server-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=environ, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout_s
        while not self._ready():
            if time.monotonic() > deadline:
                self.stop()
                msg = f"the server did not start in {start_timeout_s:g} s:\n{self.tail()}"
                raise RuntimeError(msg)
            time.sleep(0.1)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            self._log.close()
            msg = f"the server exited:\n{self.tail()}"
            raise RuntimeError(msg)
        try:
            return self.api("GET", "projects")[0] == 200
        except OSError:
            return False

    def tail(self, chars: int = 4000) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to ``path`` (with the token unless ``auth`` is off): status, headers,
        body; redirects are not followed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            headers = {"Authorization": f"token {self.token}"} if auth else {}
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``/api/ecode/{path}``: the status and the JSON answer."""
        status, _, raw = self.request(method, f"/api/ecode/{path}", body)
        return status, json.loads(raw) if raw else None

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to stop anything."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        """A normal stop (SIGTERM), then SIGKILL after 30 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
