"""ProjectManager: the one place that creates, finds, shares, deletes and purges projects.

Authorization lives here, not in handlers: every call names the acting user and the role it
needs, and a project the user cannot see is reported as not found (so ids and slugs do not leak).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..audit.log import record_audit
from ..db import Database
from ..db.models import Project, ProjectMember, Role, User, utcnow
from ..exceptions import Conflict, Forbidden, InvalidInput, NotFound, SlugTaken
from ..identity import EcodeUser
from ..pages import decode_cursor, encode_cursor
from . import validation as v

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectContext:
    """What tools, the agent and previews need to act on a project for a user."""

    id: str
    owner: str
    slug: str
    name: str
    workspace: Path
    role: Role
    template: str | None
    prompt: str | None
    model: str | None


def project_to_json(p: Project, role: Role | None) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "slug": p.slug,
        "owner": p.owner,
        "description": p.description,
        "template": p.template,
        "prompt": p.prompt,
        "model": p.model,
        "visibility": p.visibility,
        "role": role.value if role else None,
        "url": f"/ecode/@{p.owner}/{p.slug}",
        "created_at": p.created_at.isoformat(),
        "updated_at": p.updated_at.isoformat(),
        "deleted_at": p.deleted_at.isoformat() if p.deleted_at else None,
    }


def touch_user(session: Session, user: EcodeUser) -> None:
    """Make sure the user has a row (JupyterHub users appear on first use)."""
    row = session.get(User, user.username)
    if row is None:
        session.add(User(username=user.username, display_name=user.display_name))
        session.flush()
    else:
        row.last_seen_at = utcnow()


#: a member whose name starts with this is a hub group: its role goes to each of its users
GROUP_PREFIX = "group:"


def _principals(user: EcodeUser) -> list[str]:
    """The member names a user answers to: their own, and their hub groups'."""
    return [user.username, *(GROUP_PREFIX + group for group in user.groups)]


def _encode_cursor(project: Project) -> str:
    raw = json.dumps([project.updated_at.isoformat(), project.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor from ``_encode_cursor``; anything else is a 400, never a 500."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, project_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        parsed = datetime.fromisoformat(str(when))
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        msg = "cursor is not one this API gave out"
        raise InvalidInput(msg, field="cursor") from None
    if not isinstance(project_id, str):
        msg = "cursor is not one this API gave out"
        raise InvalidInput(msg, field="cursor")
    # As stored and read back (aware on PostgreSQL, naive on SQLite): compared like with like.
    return parsed, project_id


def _best(roles: Any) -> Role | None:
    """The strongest of some roles (a user in two groups gets the better one)."""
    best: Role | None = None
    for raw in roles:
        role = Role(raw)
        if best is None or role.allows(best):
            best = role
    return best


def _role_of(session: Session, project_id: str, user: EcodeUser) -> Role | None:
    return _best(
        session.scalars(
            select(ProjectMember.role).where(
                ProjectMember.project_id == project_id,
                ProjectMember.username.in_(_principals(user)),
            )
        )
    )


def _free_slug(session: Session, owner: str, base: str) -> str:
    taken = set(
        session.scalars(
            select(Project.slug).where(Project.owner == owner, Project.slug.like(f"{base}%"))
        )
    )
    if base not in taken:
        return base
    for n in range(2, 10_000):
        suffix = f"-{n}"
        candidate = base[: v.MAX_SLUG_CHARS - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
    msg = "no free slug"
    raise Conflict(msg)


class RemoteWorkspaceMaker(Protocol):
    """Makes a new project's folder elsewhere. Called by ProjectManager.create_project."""

    async def create(
        self, owner: str, project_id: str, template: str | None, name: str, slug: str
    ) -> None: ...


class ProjectManager:
    def __init__(
        self,
        db: Database,
        workspace_root: Path,
        *,
        trash_retention_days: float = 30.0,
        max_projects_per_user: int = 500,
    ) -> None:
        self.db = db
        self.workspace_root = workspace_root
        self.trash_retention = timedelta(days=trash_retention_days)
        self.max_projects_per_user = max_projects_per_user
        # Where a new project's folder is made when it is not on this machine: the ecode hub
        # service sets this to create it in the owner's own server (hub/remote.py), since
        # project files never live in the service.
        self.remote_workspaces: RemoteWorkspaceMaker | None = None
        # Told the project id after every change of its members, once it is committed (the
        # hub service keeps the hub's sharing of project servers in step through this).
        self.member_listeners: list[Callable[[str], Awaitable[None]]] = []
        # Told ``(action, project id)`` after a project is created, changed, deleted or
        # restored, once committed: the server puts it on Jupyter's event bus, so every
        # open Lab refreshes its project list whoever made the change (app.py).
        self.change_listeners: list[Callable[[str, str], None]] = []

    def _changed(self, action: str, project: dict[str, Any]) -> dict[str, Any]:
        for listener in self.change_listeners:
            try:
                listener(action, str(project.get("id", "")))
            except Exception:  # a listener must never undo a committed change
                log.exception("project change listener failed")
        return project

    def workspace_path(self, project_id: str) -> Path:
        return self.workspace_root / project_id

    # -- create / list / get ------------------------------------------------------------
    async def create_project(
        self,
        user: EcodeUser,
        *,
        name: Any,
        template: Any = None,
        prompt: Any = None,
        model: Any = None,
        slug: Any = None,
        description: Any = "",
    ) -> dict[str, Any]:
        clean_name = v.validate_name(name)
        clean_slug = v.validate_slug(slug) if slug is not None else None
        clean_prompt = v.validate_prompt(prompt) if prompt is not None else None
        clean_model = v.validate_model(model) if model is not None else None
        clean_desc = v.validate_description(description)
        tmpl = None
        if template is not None:
            from .templating import get_template

            if not isinstance(template, str):
                msg = "template must be a template id"
                raise InvalidInput(msg, field="template")
            tmpl = get_template(template)

        def create(session: Session) -> Project:
            touch_user(session, user)
            owned = session.scalar(
                select(func.count()).select_from(Project).where(Project.owner == user.username)
            )
            if (owned or 0) >= self.max_projects_per_user:
                msg = f"you have reached the limit of {self.max_projects_per_user} projects"
                raise Conflict(msg)
            want = clean_slug or v.slugify(clean_name)
            exists = session.scalar(
                select(Project.id).where(Project.owner == user.username, Project.slug == want)
            )
            if exists is not None:
                if clean_slug is not None:
                    free = _free_slug(session, user.username, want)
                    msg = f"you already have a project at /@{user.username}/{want}; try {free!r}"
                    raise SlugTaken(msg, suggestion=free)
                want = _free_slug(session, user.username, want)
            project = Project(
                owner=user.username,
                name=clean_name,
                slug=want,
                description=clean_desc,
                template=tmpl.id if tmpl else None,
                prompt=clean_prompt,
                model=clean_model,
            )
            session.add(project)
            session.flush()
            session.add(
                ProjectMember(
                    project_id=project.id,
                    username=user.username,
                    role=Role.owner.value,
                    added_by=user.username,
                )
            )
            _audit_project(
                session,
                user,
                "project.create",
                project,
                {"name": clean_name, "slug": want, "template": project.template},
            )
            session.flush()
            return project

        try:
            project = await self.db.run(create)
        except IntegrityError as exc:
            # Two creates raced for the same slug; the loser gets the same answer as a clash.
            msg = "a project with this slug was just created; try again"
            raise Conflict(msg) from exc
        ws = self.workspace_path(project.id)
        try:
            if self.remote_workspaces is not None:
                await self.remote_workspaces.create(
                    user.username, project.id, tmpl.id if tmpl else None, clean_name, project.slug
                )
            else:
                await asyncio.to_thread(self._make_workspace, ws, tmpl, clean_name, project.slug)
        except Exception:
            # No half-made project: remove the row if its folder could not be made.
            await self.db.run(lambda s: s.delete(s.get(Project, project.id)))
            raise
        log.info("project %s created by %s", project.id, user.username)
        return self._changed("created", project_to_json(project, Role.owner))

    def _make_workspace(self, ws: Path, tmpl: Any, name: str, slug: str) -> None:
        ws.mkdir(parents=True, exist_ok=False)
        if tmpl is not None:
            from .templating import render_template

            render_template(tmpl, ws, project_name=name, slug=slug)

    async def list_projects(
        self, user: EcodeUser, *, deleted: bool = False
    ) -> list[dict[str, Any]]:
        def query(session: Session) -> list[dict[str, Any]]:
            stmt = (
                select(Project, ProjectMember.role)
                .join(ProjectMember, ProjectMember.project_id == Project.id)
                .where(ProjectMember.username.in_(_principals(user)))
                .order_by(Project.updated_at.desc())
            )
            if deleted:
                stmt = stmt.where(Project.deleted_at.is_not(None))
            else:
                stmt = stmt.where(Project.deleted_at.is_(None))
            # A project reached as a user and through a group is listed once, best role.
            found: dict[str, tuple[Project, list[str]]] = {}
            for project, role in session.execute(stmt):
                found.setdefault(project.id, (project, []))[1].append(role)
            return [project_to_json(p, _best(roles)) for p, roles in found.values()]

        return await self.db.run(query)

    async def list_projects_page(
        self,
        user: EcodeUser,
        *,
        deleted: bool = False,
        limit: int = 200,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``list_projects``, newest activity first, and the cursor of the next
        page (None after the last). A cursor is opaque to clients: the last project's
        activity time and id, so pages stay stable while projects are added."""
        after = _decode_cursor(cursor) if cursor else None
        principals = _principals(user)

        def query(session: Session) -> tuple[list[dict[str, Any]], str | None]:
            member = (
                select(ProjectMember.project_id)
                .where(ProjectMember.project_id == Project.id)
                .where(ProjectMember.username.in_(principals))
            )
            stmt = select(Project).where(member.exists())
            if deleted:
                stmt = stmt.where(Project.deleted_at.is_not(None))
            else:
                stmt = stmt.where(Project.deleted_at.is_(None))
            if after is not None:
                when, last_id = after
                stmt = stmt.where(
                    or_(
                        Project.updated_at < when,
                        and_(Project.updated_at == when, Project.id < last_id),
                    )
                )
            stmt = stmt.order_by(Project.updated_at.desc(), Project.id.desc()).limit(limit + 1)
            rows = list(session.scalars(stmt))
            page, more = rows[:limit], len(rows) > limit
            roles: dict[str, list[str]] = {}
            if page:
                found = session.execute(
                    select(ProjectMember.project_id, ProjectMember.role)
                    .where(ProjectMember.project_id.in_([p.id for p in page]))
                    .where(ProjectMember.username.in_(principals))
                )
                for project_id, role in found:
                    roles.setdefault(project_id, []).append(role)
            items = [project_to_json(p, _best(roles.get(p.id, []))) for p in page]
            next_cursor = _encode_cursor(page[-1]) if more else None
            return items, next_cursor

        return await self.db.run(query)

    def _load(
        self, session: Session, user: EcodeUser, project_id: Any, need: Role, *, deleted: bool
    ) -> tuple[Project, Role]:
        if not isinstance(project_id, str) or not project_id.isalnum() or len(project_id) > 32:
            msg = "no such project"
            raise NotFound(msg)
        project = session.get(Project, project_id)
        role = _role_of(session, project_id, user) if project else None
        if project is None or role is None or (project.deleted_at is not None) != deleted:
            msg = "no such project"
            raise NotFound(msg)
        if not role.allows(need):
            msg = f"this needs the {need.value} role on the project; you are {role.value}"
            raise Forbidden(msg)
        return project, role

    async def get_project(
        self, user: EcodeUser, project_id: Any, need: Role = Role.viewer
    ) -> dict[str, Any]:
        def query(session: Session) -> dict[str, Any]:
            project, role = self._load(session, user, project_id, need, deleted=False)
            return project_to_json(project, role)

        return await self.db.run(query)

    async def project_context(
        self, user: EcodeUser, project_id: Any, need: Role = Role.viewer
    ) -> ProjectContext:
        """The project for tools, the agent and previews, after the same role check."""

        def query(session: Session) -> ProjectContext:
            p, role = self._load(session, user, project_id, need, deleted=False)
            return ProjectContext(
                id=p.id,
                owner=p.owner,
                slug=p.slug,
                name=p.name,
                workspace=self.workspace_path(p.id),
                role=role,
                template=p.template,
                prompt=p.prompt,
                model=p.model,
            )

        return await self.db.run(query)

    async def resolve_slug(self, user: EcodeUser, owner: Any, slug: Any) -> dict[str, Any]:
        if not isinstance(owner, str) or not isinstance(slug, str) or not v.SLUG_RE.fullmatch(slug):
            msg = "no such project"
            raise NotFound(msg)

        def query(session: Session) -> dict[str, Any]:
            pid = session.scalar(
                select(Project.id).where(
                    Project.owner == owner, Project.slug == slug, Project.deleted_at.is_(None)
                )
            )
            if pid is None:
                msg = "no such project"
                raise NotFound(msg)
            project, role = self._load(session, user, pid, Role.viewer, deleted=False)
            return project_to_json(project, role)

        return await self.db.run(query)

    # -- change -----------------------------------------------------------------------
    async def update_project(
        self, user: EcodeUser, project_id: Any, changes: dict[str, Any]
    ) -> dict[str, Any]:
        allowed = {"name", "description", "slug", "visibility", "model"}
        unknown = set(changes) - allowed
        if unknown:
            msg = f"cannot change {', '.join(sorted(unknown))}; changeable: {sorted(allowed)}"
            raise InvalidInput(msg)
        if not changes:
            msg = "nothing to change"
            raise InvalidInput(msg)
        clean: dict[str, Any] = {}
        if "name" in changes:
            clean["name"] = v.validate_name(changes["name"])
        if "description" in changes:
            clean["description"] = v.validate_description(changes["description"])
        if "slug" in changes:
            clean["slug"] = v.validate_slug(changes["slug"])
        if "visibility" in changes:
            clean["visibility"] = v.validate_visibility(changes["visibility"])
        if "model" in changes:
            clean["model"] = (
                None if changes["model"] is None else v.validate_model(changes["model"])
            )
        need = Role.owner if {"slug", "visibility"} & set(clean) else Role.editor

        def update(session: Session) -> dict[str, Any]:
            project, role = self._load(session, user, project_id, need, deleted=False)
            new_slug = clean.get("slug")
            if new_slug and new_slug != project.slug:
                clash = session.scalar(
                    select(Project.id).where(
                        Project.owner == project.owner, Project.slug == new_slug
                    )
                )
                if clash is not None:
                    free = _free_slug(session, project.owner, new_slug)
                    msg = f"/@{project.owner}/{new_slug} is taken; try {free!r}"
                    raise SlugTaken(msg, suggestion=free)
            before = {k: getattr(project, k) for k in clean}
            for key, value in clean.items():
                setattr(project, key, value)
            project.updated_at = utcnow()
            _audit_project(
                session, user, "project.update", project, {"before": before, "after": clean}
            )
            session.flush()
            return project_to_json(project, role)

        return self._changed("changed", await self.db.run(update))

    async def delete_project(self, user: EcodeUser, project_id: Any) -> dict[str, Any]:
        """Soft delete: hidden, restorable until purged after the retention period."""

        def delete(session: Session) -> dict[str, Any]:
            project, role = self._load(session, user, project_id, Role.owner, deleted=False)
            project.deleted_at = utcnow()
            _audit_project(session, user, "project.delete", project)
            session.flush()
            return project_to_json(project, role)

        return self._changed("deleted", await self.db.run(delete))

    async def restore_project(self, user: EcodeUser, project_id: Any) -> dict[str, Any]:
        def restore(session: Session) -> dict[str, Any]:
            project, role = self._load(session, user, project_id, Role.owner, deleted=True)
            project.deleted_at = None
            project.updated_at = utcnow()
            _audit_project(session, user, "project.restore", project)
            session.flush()
            return project_to_json(project, role)

        return self._changed("restored", await self.db.run(restore))

    async def purge_expired(self, now: datetime | None = None) -> list[str]:
        """Remove projects deleted longer ago than the retention period, rows and folders."""
        cutoff = (now or utcnow()) - self.trash_retention

        def purge(session: Session) -> list[str]:
            expired = list(
                session.scalars(
                    select(Project).where(
                        Project.deleted_at.is_not(None), Project.deleted_at < cutoff
                    )
                )
            )
            for project in expired:
                record_audit(
                    session,
                    actor="system",
                    action="project.purge",
                    target_type="project",
                    target_id=project.id,
                    project_id=project.id,
                    details={"owner": project.owner, "slug": project.slug},
                )
                session.delete(project)
            return [p.id for p in expired]

        purged = await self.db.run(purge)
        for pid in purged:
            await asyncio.to_thread(shutil.rmtree, self.workspace_path(pid), True)
            log.info("purged project %s", pid)
        return purged

    # -- members ----------------------------------------------------------------------
    async def list_members(self, user: EcodeUser, project_id: Any) -> list[dict[str, Any]]:
        def query(session: Session) -> list[dict[str, Any]]:
            self._load(session, user, project_id, Role.viewer, deleted=False)
            rows = session.scalars(
                select(ProjectMember)
                .where(ProjectMember.project_id == project_id)
                .order_by(ProjectMember.added_at)
            )
            return [
                {"user": m.username, "role": m.role, "added_at": m.added_at.isoformat()}
                for m in rows
            ]

        return await self.db.run(query)

    async def list_members_page(
        self, user: EcodeUser, project_id: Any, *, limit: int = 200, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``list_members`` (oldest membership first) and the next page's cursor
        (None after the last)."""
        after = decode_cursor(cursor, datetime, str) if cursor else None

        def query(session: Session) -> tuple[list[dict[str, Any]], str | None]:
            self._load(session, user, project_id, Role.viewer, deleted=False)
            stmt = select(ProjectMember).where(ProjectMember.project_id == project_id)
            if after is not None:
                when, name = after
                stmt = stmt.where(
                    or_(
                        ProjectMember.added_at > when,
                        and_(ProjectMember.added_at == when, ProjectMember.username > name),
                    )
                )
            stmt = stmt.order_by(ProjectMember.added_at, ProjectMember.username).limit(limit + 1)
            rows = list(session.scalars(stmt))
            page, more = rows[:limit], len(rows) > limit
            items = [
                {"user": m.username, "role": m.role, "added_at": m.added_at.isoformat()}
                for m in page
            ]
            last = page[-1] if page else None
            return items, encode_cursor(last.added_at, last.username) if more and last else None

        return await self.db.run(query)

    async def set_member(
        self, user: EcodeUser, project_id: Any, member: Any, role: Any
    ) -> dict[str, Any]:
        username = v.validate_username(member)
        new_role = v.validate_role(role)

        def put(session: Session) -> dict[str, Any]:
            project, _ = self._load(session, user, project_id, Role.owner, deleted=False)
            if session.get(User, username) is None:
                session.add(User(username=username, display_name=username))
                session.flush()
            row = session.get(ProjectMember, (project.id, username))
            if row is not None and row.role == Role.owner.value and new_role != Role.owner:
                _ensure_another_owner(session, project.id, username)
            if row is None:
                row = ProjectMember(
                    project_id=project.id,
                    username=username,
                    role=new_role.value,
                    added_by=user.username,
                )
                session.add(row)
            else:
                row.role = new_role.value
            record_audit(
                session,
                actor=user.username,
                action="member.set",
                target_type="member",
                target_id=username,
                project_id=project.id,
                remote_ip=user.remote_ip,
                details={"role": new_role.value},
            )
            session.flush()
            return {"user": username, "role": row.role, "added_at": row.added_at.isoformat()}

        result = await self.db.run(put)
        await self._members_changed(str(project_id))
        return result

    async def remove_member(self, user: EcodeUser, project_id: Any, member: Any) -> None:
        username = v.validate_username(member)

        def remove(session: Session) -> None:
            # Anyone may leave a project; removing someone else takes the owner role.
            need = Role.viewer if username == user.username else Role.owner
            project, _ = self._load(session, user, project_id, need, deleted=False)
            row = session.get(ProjectMember, (project.id, username))
            if row is None:
                msg = f"{username} is not a member of this project"
                raise NotFound(msg)
            if row.role == Role.owner.value:
                _ensure_another_owner(session, project.id, username)
            session.delete(row)
            record_audit(
                session,
                actor=user.username,
                action="member.remove",
                target_type="member",
                target_id=username,
                project_id=project.id,
                remote_ip=user.remote_ip,
            )

        await self.db.run(remove)
        await self._members_changed(str(project_id))

    async def _members_changed(self, project_id: str) -> None:
        for listener in list(self.member_listeners):
            # A failure reaches the caller: a removal the hub did not apply must not look done.
            await listener(project_id)

    async def project_facts(self, project_id: str) -> tuple[str, str] | None:
        """(owner, slug) of a project, deleted or not; unchecked, for the service itself."""

        def query(session: Session) -> tuple[str, str] | None:
            project = session.get(Project, project_id)
            return (project.owner, project.slug) if project is not None else None

        return await self.db.run(query)

    async def member_roles(self, project_id: str) -> dict[str, str]:
        """Every member's role (user -> role); for the service's own bookkeeping, unchecked."""

        def query(session: Session) -> dict[str, str]:
            rows = session.execute(
                select(ProjectMember.username, ProjectMember.role).where(
                    ProjectMember.project_id == project_id
                )
            )
            return {name: role for name, role in rows}

        return await self.db.run(query)


def _audit_project(
    session: Session,
    user: EcodeUser,
    action: str,
    project: Project,
    details: dict[str, Any] | None = None,
) -> None:
    record_audit(
        session,
        actor=user.username,
        action=action,
        target_type="project",
        target_id=project.id,
        project_id=project.id,
        remote_ip=user.remote_ip,
        details=details,
    )


def _ensure_another_owner(session: Session, project_id: str, leaving: str) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(ProjectMember)
        .where(
            ProjectMember.project_id == project_id,
            ProjectMember.role == Role.owner.value,
            ProjectMember.username != leaving,
        )
    )
    if not others:
        msg = "a project needs at least one owner; make someone else owner first"
        raise Conflict(msg)
