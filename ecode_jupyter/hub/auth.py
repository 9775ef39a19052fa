"""Who may call the ecode service, and what they may reach in it.

The service is a jupyter_server process (so the suite's handlers run unchanged) with
JupyterHub's own identity provider: ``Authorization: token`` for API clients, the hub's OAuth
cookie for browsers, and access only for holders of ``access:services!service=ecode``. Two
things are added here:

- :class:`ServiceIdentityProvider` completes each hub user with what the user's own token may
  not show (the admin flag, the groups), read with the service's token, so hub admins are
  ecode admins whatever scopes the caller's token has;
- :class:`ServiceAuthorizer` allows the ``ecode`` resource only. The service's process holds
  every shared secret, so Jupyter's own APIs (contents, kernels, terminals, sessions, ...) must
  never answer there, whoever asks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import httpx2
from jupyterhub.singleuser.extension import JupyterHubAuthorizer, JupyterHubIdentityProvider

from ..handlers.base import AUTH_RESOURCE

log = logging.getLogger(__name__)

#: the custom scope (declared in the hub's config) that makes a project member an editor
WRITE_SCOPE = "custom:ecode:write"
#: resources a viewer may not even read (a terminal or a kernel is running code)
VIEWER_DENIED = frozenset({"terminals", "kernels"})


class ServiceIdentityProvider(JupyterHubIdentityProvider):  # type: ignore[misc]
    async def get_user(self, handler: Any) -> Any:
        user = await super().get_user(handler)
        model = getattr(user, "hub_user", None)
        directory = handler.settings.get("ecode_hub_directory")
        if not isinstance(model, dict) or directory is None or model.get("kind") != "user":
            return user
        # Every request: the hub's answer for a token is cached for minutes, while the
        # directory's is seconds old at most (an admin flag or a group may change meanwhile).
        full = await directory.user(str(model.get("name")))
        model["admin"] = bool((full or {}).get("admin"))
        model["groups"] = list((full or {}).get("groups") or [])
        return user


class ServiceAuthorizer(JupyterHubAuthorizer):  # type: ignore[misc]
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource != AUTH_RESOURCE:
            return False
        return bool(super().is_authorized(handler, user, action, resource))


class ProjectAuthorizer(JupyterHubAuthorizer):  # type: ignore[misc]
    """A project's own server: members in by the hub's sharing, their role enforced here.

    The hub's proxy lets in whoever holds a share of this server (hub/projects.py keeps the
    shares in step with ecode's roles). Browser tokens carry only the access scope, so an
    editor is told from a viewer by reading the server's shares (with this server's token,
    which holds ``read:shares!server``): a share with ``custom:ecode:write`` is an editor's.
    The owner and the ecode service may do everything; a viewer may only read (no writes, no
    kernels, no terminals).
    """

    #: seconds a share list is trusted (a revoked editor loses write within this long)
    share_cache_s = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = os.environ.get("JUPYTERHUB_USER", "")
        self._server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        self._service = os.environ.get("ECODE_SERVICE_NAME", "ecode")
        self._writers: tuple[float, frozenset[str]] | None = None
        self._lock = asyncio.Lock()

    async def _write_members(self) -> frozenset[str]:
        async with self._lock:
            now = time.monotonic()
            if self._writers is not None and now - self._writers[0] < self.share_cache_s:
                return self._writers[1]
            api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
            token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
            wanted = f"{WRITE_SCOPE}!server={self._owner}/{self._server}"
            writers: set[str] = set()
            try:
                async with httpx2.AsyncClient(timeout=10) as http:
                    resp = await http.get(
                        f"{api}/shares/{self._owner}/{self._server}",
                        headers={"Authorization": f"token {token}"},
                    )
                resp.raise_for_status()
                for share in resp.json().get("items", []):
                    if wanted not in (share.get("scopes") or []):
                        continue
                    user = (share.get("user") or {}).get("name")
                    group = (share.get("group") or {}).get("name")
                    if user:
                        writers.add(user)
                    elif group:
                        writers.add(f"group:{group}")
            except (httpx2.HTTPError, ValueError):
                # Fail closed: nobody but the owner and the service writes until the hub answers.
                log.warning("reading this server's shares failed; members are read-only for now")
                return frozenset()
            self._writers = (now, frozenset(writers))
            return self._writers[1]

    async def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if not super().is_authorized(handler, user, action, resource):
            return False
        model = getattr(user, "hub_user", None) or {}
        kind, name = model.get("kind", "user"), model.get("name", "")
        if (kind == "user" and name == self._owner) or (
            kind == "service" and name == self._service
        ):
            return True
        if kind == "user":
            writers = await self._write_members()
            # Groups are known only when the hub's answer names them; without, read-only.
            groups = {f"group:{g}" for g in model.get("groups") or [] if isinstance(g, str)}
            if name in writers or groups & writers:
                return True
        # A viewer: reading only, and never a terminal or a kernel (running code writes).
        return action == "read" and resource not in VIEWER_DENIED
