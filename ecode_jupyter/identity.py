"""Who is calling: an ecode user from jupyter_server's identity.

JupyterHub users (and any custom IdentityProvider) keep their usernames. A stock single-user
Jupyter server names every token or cookie login a fresh random "Anonymous" user; there the
person is the server's owner, so they all map to one configured owner name and their projects
stay theirs across browser sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jupyter_server.auth import IdentityProvider
from jupyter_server.auth.identity import PasswordIdentityProvider


@dataclass(frozen=True)
class EcodeUser:
    username: str
    display_name: str
    is_admin: bool
    # Where the request came from, for the audit trail.
    remote_ip: str | None = None
    # Hub groups the user is in (a project member "group:{name}" gives them its role).
    groups: tuple[str, ...] = ()


def resolve_user(
    jupyter_user: Any,
    identity_provider: Any,
    *,
    owner_name: str,
    admin_users: set[str],
    owner_is_admin: bool,
) -> EcodeUser:
    hub_user = getattr(jupyter_user, "hub_user", None)
    if isinstance(hub_user, dict):
        username = str(hub_user.get("name") or jupyter_user.username)
        is_admin = bool(hub_user.get("admin")) or username in admin_users
        groups = tuple(str(g) for g in hub_user.get("groups") or [] if isinstance(g, str))
        display = str(getattr(jupyter_user, "display_name", username))
        return EcodeUser(username, display, is_admin, groups=groups)
    # jupyter_server's default is PasswordIdentityProvider (token or password login).
    if type(identity_provider) in (IdentityProvider, PasswordIdentityProvider):
        # Stock single-user server: whoever holds the token is the owner.
        return EcodeUser(owner_name, owner_name, owner_is_admin or owner_name in admin_users)
    username = str(jupyter_user.username)
    display = str(getattr(jupyter_user, "display_name", "") or username)
    return EcodeUser(username, display, username in admin_users)
