"""Finding the Jupyter server a kernel (or a shell) should talk to, and its token.

In order: an explicit URL (``%ecode connect``), ``ECODE_SERVER_URL`` from the environment,
then the running-server list (the ``jpserver-*.json`` files in the runtime dir) — the server
that started this kernel first (``JPY_PARENT_PID``), then the one whose ``root_dir`` holds the
working directory, then the only one — and last a JupyterHub user server's own URL.

The token comes from the same place as the URL; ``ECODE_TOKEN``, ``JUPYTER_TOKEN`` and
``JUPYTERHUB_API_TOKEN`` fill in when that place has none. A token never appears in a repr.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TOKEN_ENV_VARS = ("ECODE_TOKEN", "JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN")


@dataclass(frozen=True)
class ServerInfo:
    """Where a server is (``url`` ends with the base URL and a ``/``) and how to log in."""

    url: str
    token: str | None = field(default=None, repr=False)
    source: str = ""

    @property
    def api_url(self) -> str:
        return self.url + "api/ecode/"

    @property
    def ws_url(self) -> str:
        """The ``api/ecode/`` URL with a ``ws://`` / ``wss://`` scheme."""
        if self.api_url.startswith("https://"):
            return "wss://" + self.api_url[len("https://") :]
        return "ws://" + self.api_url.removeprefix("http://")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


def normalize_url(url: str) -> str:
    """``localhost:8888/lab?token=…`` → ``http://localhost:8888/`` (query and UI paths dropped)."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    url = url.split("?", 1)[0].split("#", 1)[0]
    # A URL copied from the browser points into the UI; the API lives at the base URL.
    for ui_path in ("/lab", "/tree", "/notebooks", "/doc"):
        head, sep, _ = url.partition(ui_path + "/")
        if sep:
            url = head
            break
        if url.endswith(ui_path):
            url = url[: -len(ui_path)]
            break
    return url.rstrip("/") + "/"


def env_token(env: Mapping[str, str]) -> str | None:
    for name in TOKEN_ENV_VARS:
        value = env.get(name)
        if value:
            return value
    return None


def _contains(root: str, cwd: Path) -> bool:
    try:
        cwd.relative_to(Path(root).expanduser().resolve())
    except (ValueError, OSError):
        return False
    return True


def _parent_pid(env: Mapping[str, str]) -> int:
    # jupyter_client sets JPY_PARENT_PID in a kernel's environment to the server's pid.
    try:
        return int(env.get("JPY_PARENT_PID", ""))
    except ValueError:
        return os.getppid()


def choose_running_server(
    servers: Iterable[Mapping[str, Any]], *, cwd: Path, parent_pid: int
) -> Mapping[str, Any] | None:
    """The server that started us, else the one whose root_dir holds ``cwd`` (the deepest
    root wins), else the only one; None when several fit equally badly."""
    usable = [s for s in servers if s.get("url") and not s.get("sock")]
    for server in usable:
        if server.get("pid") == parent_pid:
            return server
    holding = [s for s in usable if s.get("root_dir") and _contains(str(s["root_dir"]), cwd)]
    if holding:
        return max(holding, key=lambda s: len(str(Path(str(s["root_dir"])).resolve())))
    if len(usable) == 1:
        return usable[0]
    return None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def running_servers(runtime_dir: str | None = None) -> list[dict[str, Any]]:
    """The ``jpserver-*.json`` files of live servers, as ``list_running_servers`` reads them.

    Read here rather than through ``jupyter_server.serverapp``, whose import costs a kernel
    about two seconds; stale files are skipped, not deleted (they are the server's to clean).
    """
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    folder = Path(runtime_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written, or not ours to read
        if isinstance(info, dict) and _alive(info.get("pid")):
            found.append(info)
    return found


def find_server(
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    runtime_dir: str | None = None,
) -> ServerInfo | None:
    """The server to use from this process's environment, or None when none is found."""
    env = os.environ if env is None else env
    url = env.get("ECODE_SERVER_URL")
    if url:
        return ServerInfo(normalize_url(url), env_token(env), "ECODE_SERVER_URL")
    here = (cwd or Path.cwd()).resolve()
    chosen = choose_running_server(
        running_servers(runtime_dir), cwd=here, parent_pid=_parent_pid(env)
    )
    if chosen is not None:
        token = str(chosen.get("token") or "") or env_token(env)
        source = f"running server (pid {chosen.get('pid')}, root {chosen.get('root_dir')})"
        return ServerInfo(normalize_url(str(chosen["url"])), token, source)
    hub_url = env.get("JUPYTERHUB_SERVICE_URL")
    if hub_url:
        return ServerInfo(normalize_url(hub_url), env_token(env), "JUPYTERHUB_SERVICE_URL")
    return None


def describe_running_servers(runtime_dir: str | None = None) -> list[str]:
    """URLs (never tokens) of the servers in the running-server list, for error messages."""
    return [str(s.get("url")) for s in running_servers(runtime_dir) if s.get("url")]
