"""Projects as servers of their own (the service side): spawn, share, stop.

With ``c.EcodeApp.hub_project_servers`` on, a project's files and processes live in a named
server of its owner, ``/user/{owner}/ecode-{slug}``, whose root is the project's workspace
(the hub's ``pre_spawn_hook`` in ``examples/jupyterhub/`` makes the folder and points the server
at it). The service spawns it through the hub's REST API when someone opens the project or
the agent needs it, and keeps the hub's sharing in step with ecode's roles, so the hub's proxy
lets exactly the members in:

- every member gets ``access:servers!server={owner}/{name}``;
- editors also get ``custom:ecode:write!server={owner}/{name}``, which the project server's
  Authorizer (``hub/auth.py`` ``ProjectAuthorizer``) reads from the server's shares: without it
  a member may read files but not write them, run kernels or open terminals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..exceptions import Conflict, InvalidInput
from ..projects.manager import GROUP_PREFIX
from .auth import WRITE_SCOPE
from .remote import HubDirectory, ServiceUnavailable

log = logging.getLogger(__name__)

#: prefix of project servers' names
SERVER_PREFIX = "ecode-"
SPAWN_TIMEOUT_S = 120.0
POLL_S = 0.1


def server_name(slug: str) -> str:
    return f"{SERVER_PREFIX}{slug}"


def share_scopes(owner: str, name: str, role: str) -> list[str]:
    """The hub scopes a member with ``role`` holds on the project's server."""
    scopes = [f"access:servers!server={owner}/{name}"]
    if role in ("owner", "editor"):
        scopes.append(f"{WRITE_SCOPE}!server={owner}/{name}")
    return scopes


class ProjectServers:
    """The service's hand on project servers (spawn, stop, state, shares)."""

    def __init__(self, directory: HubDirectory, profiles: list[str] | None = None) -> None:
        self.directory = directory
        #: the spawner profiles an admin allows project servers (the first is the default)
        self.profiles = list(profiles or [])
        self._spawn_locks: dict[tuple[str, str], asyncio.Lock] = {}

    def profile_for(self, asked: Any) -> str | None:
        """The profile to start a server with: ``asked`` if the admin allows it, else 400."""
        if asked is None:
            return self.profiles[0] if self.profiles else None
        if not self.profiles:
            msg = (
                "this hub offers no profiles for project servers (c.EcodeApp.hub_project_profiles)"
            )
            raise InvalidInput(msg, field="profile")
        if not isinstance(asked, str) or asked not in self.profiles:
            msg = f"profile must be one of {', '.join(self.profiles)}"
            raise InvalidInput(msg, field="profile")
        return asked

    @property
    def http(self) -> Any:
        return self.directory.http

    def _api(self, path: str) -> str:
        return f"{self.directory.link.api_url}{path}"

    def url(self, owner: str, name: str) -> str:
        return f"{self.directory.link.users_url}user/{owner}/{name}/"

    async def state(self, owner: str, name: str) -> dict[str, Any] | None:
        """The hub's model of the server (None when it was never created)."""
        resp = await self.http.get(self._api(f"users/{owner}"))
        if resp.status_code != 200:
            return None
        servers = resp.json().get("servers") or {}
        server = servers.get(name)
        return server if isinstance(server, dict) else None

    async def ensure_running(
        self,
        owner: str,
        name: str,
        project_id: str,
        members: dict[str, str],
        template: str | None = None,
        profile: str | None = None,
    ) -> str:
        """Start the project's server if it is not running; its base URL once it answers.

        ``profile`` (already allowed by :meth:`profile_for`) goes to the spawner in the
        server's ``user_options``; a running server keeps the profile it was started with.
        """
        key = (owner, name)
        lock = self._spawn_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one spawn per server however many callers wait for it
            server = await self.state(owner, name)
            if not (server and server.get("ready")):
                if not (server and server.get("pending")):
                    options: dict[str, str] = {"ecode_project": project_id}
                    chosen = profile or self.profile_for(None)
                    if chosen:
                        # KubeSpawner's profile_list reads this key; the one-machine example's
                        # pre_spawn_hook too.
                        options["profile"] = chosen
                    resp = await self.http.post(
                        self._api(f"users/{owner}/servers/{name}"),
                        # Read by the hub's pre_spawn_hook (examples/jupyterhub/).
                        json=options,
                    )
                    if resp.status_code not in (201, 202, 400):
                        msg = f"the hub refused to start the project's server: {resp.text}"
                        raise ServiceUnavailable(msg)
                await self._wait_ready(owner, name)
            await self.sync_shares(owner, name, members)
        return self.url(owner, name)

    async def _wait_ready(self, owner: str, name: str) -> None:
        deadline = time.monotonic() + SPAWN_TIMEOUT_S
        while time.monotonic() < deadline:
            server = await self.state(owner, name)
            if server and server.get("ready"):
                return
            if not server or not server.get("pending"):
                # Neither running nor starting: the spawn failed (the hub's log says why).
                msg = "the project's server failed to start; ask the hub's admin"
                raise ServiceUnavailable(msg)
            await asyncio.sleep(POLL_S)
        msg = f"the project's server did not start in {SPAWN_TIMEOUT_S:.0f} s"
        raise ServiceUnavailable(msg)

    async def stop(self, owner: str, name: str) -> None:
        resp = await self.http.delete(self._api(f"users/{owner}/servers/{name}"))
        if resp.status_code not in (202, 204, 400, 404):
            msg = f"the hub refused to stop the project's server: {resp.text}"
            raise Conflict(msg)

    async def sync_shares(self, owner: str, name: str, members: dict[str, str]) -> None:
        """Make the server's shares say exactly ``members`` (member -> role), owner aside.

        A member ``group:{name}`` is the hub group of that name (shared as a group). A server
        the hub has never created has no shares to keep; they are made when it is.
        """
        url = self._api(f"shares/{owner}/{name}")
        resp = await self.http.get(url)
        if resp.status_code == 404:
            return
        resp.raise_for_status()
        current: dict[str, set[str]] = {}
        for share in resp.json().get("items", []):
            user = (share.get("user") or {}).get("name")
            group = (share.get("group") or {}).get("name")
            member = user or (f"{GROUP_PREFIX}{group}" if group else None)
            if member:
                current[member] = set(share.get("scopes") or [])
        wanted = {m: r for m, r in members.items() if m != owner}
        for member, role in wanted.items():
            scopes = share_scopes(owner, name, role)
            extra = current.get(member, set()) - set(scopes)
            if extra:
                # A demoted editor loses the write scope (and anything else not ecode's).
                revoke = await self.http.patch(url, json={**_who(member), "scopes": sorted(extra)})
                revoke.raise_for_status()
            if not set(scopes) <= current.get(member, set()):
                grant = await self.http.post(url, json={**_who(member), "scopes": scopes})
                if grant.status_code == 400 and "No such" in grant.text:
                    # A member the hub does not know (yet): nothing the proxy could let in.
                    log.info("project server %s/%s: no hub %s to share with", owner, name, member)
                    continue
                grant.raise_for_status()
        for member in set(current) - set(wanted):
            # Removed members lose every scope on the server at once.
            revoke = await self.http.patch(url, json=_who(member))
            revoke.raise_for_status()


def _who(member: str) -> dict[str, str]:
    """The hub's sharing API names a user or a group."""
    if member.startswith(GROUP_PREFIX):
        return {"group": member[len(GROUP_PREFIX) :]}
    return {"user": member}
