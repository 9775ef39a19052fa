"""ProjectManager below the REST layer: purge after retention, concurrent slugs, identity."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.db import Database
from ecode_jupyter.db.models import utcnow
from ecode_jupyter.exceptions import NotFound
from ecode_jupyter.identity import EcodeUser, resolve_user
from ecode_jupyter.projects import ProjectManager

ALICE = EcodeUser("alice", "Alice", False)


@pytest.fixture
def manager(ecode_db: Database, tmp_path: Path) -> ProjectManager:
    return ProjectManager(ecode_db, tmp_path / "ws", trash_retention_days=7)


async def test_deleted_projects_are_purged_after_retention(manager: ProjectManager) -> None:
    keep = await manager.create_project(ALICE, name="keep", template="python-script")
    gone = await manager.create_project(ALICE, name="gone")
    assert (manager.workspace_path(keep["id"]) / "main.py").exists()
    await manager.delete_project(ALICE, keep["id"])
    await manager.delete_project(ALICE, gone["id"])

    # Within the retention period nothing is purged.
    assert await manager.purge_expired() == []
    later = utcnow() + timedelta(days=7, hours=1)
    await manager.restore_project(ALICE, keep["id"])
    assert await manager.purge_expired(now=later) == [gone["id"]]
    assert not manager.workspace_path(gone["id"]).exists()
    assert manager.workspace_path(keep["id"]).exists()
    with pytest.raises(NotFound):
        await manager.restore_project(ALICE, gone["id"])


async def test_concurrent_creates_get_distinct_slugs(manager: ProjectManager) -> None:
    results = await asyncio.gather(
        *(manager.create_project(ALICE, name="Same Name") for _ in range(6)),
        return_exceptions=True,
    )
    made = [r for r in results if isinstance(r, dict)]
    # Every create either succeeds with its own slug or gets a clear conflict to retry.
    assert all(isinstance(r, dict) or getattr(r, "status", 0) == 409 for r in results)
    slugs = [p["slug"] for p in made]
    assert len(slugs) == len(set(slugs)) >= 1
    listed = await manager.list_projects(ALICE)
    assert sorted(p["slug"] for p in listed) == sorted(slugs)


def test_identity_mapping() -> None:
    from jupyter_server.auth import IdentityProvider
    from jupyter_server.auth.identity import User

    anon = User(username="3f2a", name="Anonymous Io")
    stock = IdentityProvider()
    me = resolve_user(anon, stock, owner_name="sam", admin_users=set(), owner_is_admin=True)
    assert (me.username, me.is_admin) == ("sam", True)

    class HubUser(User):
        hub_user: dict[str, Any] = {"name": "maria", "admin": True}

    hub = resolve_user(
        HubUser(username="maria"), stock, owner_name="sam", admin_users=set(), owner_is_admin=True
    )
    assert (hub.username, hub.is_admin) == ("maria", True)

    class Custom(IdentityProvider):
        pass

    bob = resolve_user(
        User(username="bob"), Custom(), owner_name="sam", admin_users={"root"}, owner_is_admin=True
    )
    assert (bob.username, bob.is_admin) == ("bob", False)
