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

from typing import Any

from jupyterhub.singleuser.extension import JupyterHubAuthorizer, JupyterHubIdentityProvider

from ..handlers.base import AUTH_RESOURCE


class ServiceIdentityProvider(JupyterHubIdentityProvider):  # type: ignore[misc]
    async def get_user(self, handler: Any) -> Any:
        user = await super().get_user(handler)
        model = getattr(user, "hub_user", None)
        directory = handler.settings.get("ecode_hub_directory")
        if not isinstance(model, dict) or directory is None or model.get("kind") != "user":
            return user
        if "ecode_checked" not in model:
            full = await directory.user(str(model.get("name")))
            model["admin"] = bool((full or {}).get("admin"))
            model["groups"] = list((full or {}).get("groups") or [])
            model["ecode_checked"] = True
        return user


class ServiceAuthorizer(JupyterHubAuthorizer):  # type: ignore[misc]
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource != AUTH_RESOURCE:
            return False
        return bool(super().is_authorized(handler, user, action, resource))
