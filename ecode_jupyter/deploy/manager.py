"""DeployManager: previews, releases, rollback, export, and the routes the proxy serves.

Each project has two app slots. ``preview`` runs the workspace itself (reloaded on save) at
``{base_url}ecode/apps/@owner/slug/``; ``live`` runs the live release (an immutable snapshot)
at ``{base_url}ecode/live/@owner/slug/``. A new release goes live only after it answers its
health check on a port of its own; then the slot switches to it and the old one is stopped.

Who may open an app, by the project's ``visibility``: ``public`` — anyone, signed in or not;
``members`` — any member of the project; ``private`` (the default) — its editors and owners.

Browsers send no cookies from a sandboxed page (the app runs in an opaque origin), so an
app's sub-resources and WebSockets cannot be authorized by the Jupyter login. Each running
deployment therefore has an unguessable key, and the app is served under
``…/@owner/slug/~{key}/``: the key is the capability. A person who may open the app reaches
it through the plain URL (authorized with their Jupyter login), which redirects to the keyed
one; the key changes with every new deployment, which is how a shared link is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets as pysecrets
import shutil
import socket
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..audit.log import record_audit
from ..context import server_identity
from ..db import Database
from ..db.models import Project, ProjectMember, Role, utcnow
from ..exceptions import Conflict, EcodeError, InvalidInput, NotBuilt, NotFound
from ..identity import EcodeUser
from ..pages import INT32_MAX, decode_cursor, encode_cursor
from ..projects.manager import ProjectContext, ProjectManager
from ..secrets.manager import SecretsManager
from ..tools.context import project_environment
from ..workspace.commands import Launcher, base_environment
from .backend import BackendPool
from .detection import RunSpec, detect_run, spec_from_json
from .export import ExportBundle, build_export, write_archive
from .logs import LogBuffer
from .models import Deployment, Release
from .orphans import APP_MARKER, app_marker, identity_tag, kill_orphan_apps
from .proxy import URL_SEGMENT
from .releases import BlobStore, SnapshotLimits, walk_files
from .supervisor import AppLaunch, Supervisor, SupervisorOptions

if TYPE_CHECKING:
    from ..tools.preview import PreviewBackend

log = logging.getLogger(__name__)

ACTIVE = ("starting", "running", "restarting")
KINDS = ("preview", "release")
_RECENT_LOGS = 50


def may_view_app(visibility: str, role: Role | None) -> bool:
    if visibility == "public":
        return True
    if role is None:
        return False
    return visibility == "members" or role.allows(Role.editor)


@dataclass
class DeployOptions:
    releases_dir: Path
    base_url: str = "/"
    # "" serves apps on the Jupyter origin inside a CSP sandbox; an origin such as
    # "https://apps.example.com" serves them there (a host that reaches this server).
    preview_origin: str = ""
    # Whether app pages on the preview origin keep an origin of their own (CSP sandbox with
    # ``allow-same-origin``): only on a host name of its own. Browsers share cookies between
    # the ports of one host, so on Jupyter's host name the sandbox stays (``preview_isolation``).
    preview_own_origin: bool = False
    idle_timeout_s: float = 3600.0
    log_lines: int = 2000
    sweep_interval_s: float = 5.0
    access_cache_s: float = 5.0
    # The server's stable identity (context.server_identity): its rows are ``host`` = this.
    # Without one, an identity of its own: no other manager's apps or rows are ever its.
    server_id: str = field(default_factory=lambda: f"unnamed:{pysecrets.token_hex(8)}")
    supervisor: SupervisorOptions = field(default_factory=SupervisorOptions)
    snapshot_limits: SnapshotLimits = field(default_factory=SnapshotLimits)
    launcher: Launcher | None = None

    @property
    def server_tag(self) -> str:
        """The mark of this server's app processes (``deploy/orphans.py``)."""
        return identity_tag(self.server_id)


@dataclass(eq=False)
class LiveApp:
    """A deployment this server is running (or ran recently, for its logs)."""

    id: str
    project_id: str
    owner: str
    slug: str
    kind: str
    key: str
    base_path: str
    spec: RunSpec
    supervisor: Supervisor
    logs: LogBuffer
    created_by: str
    created_at: datetime
    release_id: str | None = None
    release_number: int | None = None
    run_dir: str | None = None
    # Coalesces DB writes of state changes: at most one writer per app at a time.
    persist_task: asyncio.Task[None] | None = None
    persist_again: bool = False

    @property
    def slot(self) -> str:
        return self.kind


@dataclass(frozen=True)
class ProjectRoute:
    project_id: str
    owner: str
    slug: str
    visibility: str


class DeployManager:
    def __init__(
        self,
        db: Database,
        projects: ProjectManager,
        secrets: SecretsManager,
        options: DeployOptions,
    ) -> None:
        self.db = db
        self.projects = projects
        self.secrets = secrets
        self.options = options
        self.store = BlobStore(options.releases_dir)
        # Keep-alive connections from the proxy to the apps.
        self.backend = BackendPool()
        # Told whenever the running apps or their ports change (the app gateway).
        self.route_listeners: list[Callable[[], None]] = []
        self._apps: dict[str, LiveApp] = {}
        self._slots: dict[tuple[str, str], LiveApp] = {}
        self._by_key: dict[str, LiveApp] = {}
        self._recent: OrderedDict[str, LiveApp] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._routes: dict[tuple[str, str], tuple[float, ProjectRoute | None]] = {}
        self._roles: dict[tuple[str, str], tuple[float, Role | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # On a hub's ecode service (hub/releases.py): brings the project's files into
        # ``project.workspace`` before a release snapshots them, since they live in another
        # server; and previews are not run here (they belong to the project's server).
        self.before_snapshot: Callable[[ProjectContext], Awaitable[None]] | None = None
        self.previews_here = True
        # On the hub's service: previews are run by the project's server, asked through its
        # tools (hub/remote.py RemotePreviews); this manager then only checks the role.
        self.remote_previews: PreviewBackend | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Reconcile what a previous life of this server left: kill its apps that outlived
        it, mark their rows stopped, resume its live releases; then sweep periodically.

        A crashed server's apps cannot be adopted: their output pipe, keys and supervision
        died with it. Rows are this server's by its stable identity (``server_id``), and
        rows of the identity that earlier versions used (``host:port{base_url}``, a new
        port at every start under a hub spawner) on this host are taken over too."""
        server = self.options.server_id
        await asyncio.to_thread(kill_orphan_apps, self.options.server_tag)
        legacy = re.compile(
            rf"{re.escape(socket.gethostname())}:\d+{re.escape(self.options.base_url)}"
        )

        def tidy(session: Session) -> list[tuple[str, str]]:
            rows = session.scalars(
                select(Deployment).where(
                    (Deployment.host == server)
                    | Deployment.host.startswith(f"{socket.gethostname()}:", autoescape=True),
                    (Deployment.status.in_(ACTIVE)) | (Deployment.resume.is_(True)),
                )
            )
            resume = []
            for row in rows:
                if row.host != server and not legacy.fullmatch(row.host):
                    continue  # another server of this host
                if (
                    row.kind == "release"
                    and row.release_id
                    and (row.resume or row.status in ACTIVE)
                ):
                    resume.append((row.project_id, row.release_id))
                if row.status in ACTIVE:
                    # Still "running": the server died without stopping it (a crash).
                    row.status = "stopped"
                    row.reason = "the server stopped unexpectedly"
                    row.stopped_at = utcnow()
                row.resume = False
            return resume

        resume = await self.db.run(tidy)
        for project_id, release_id in dict(resume).items():
            self._spawn(self._resume_release(project_id, release_id))
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def stop_all(self) -> None:
        """Stop every app (server shutdown); live releases resume at the next start."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        apps = list(self._apps.values())
        await asyncio.gather(
            *(
                self._stop_app(app, "the server stopped", resume=app.kind == "release")
                for app in apps
            ),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.backend.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lock(self, project_id: str, kind: str) -> asyncio.Lock:
        # One start at a time per slot; a release's health check never holds up a preview.
        return self._locks.setdefault(f"{project_id}:{kind}", asyncio.Lock())

    # -- urls ----------------------------------------------------------------------------
    def entry_path(self, kind: str, owner: str, slug: str) -> str:
        return f"{self.options.base_url}ecode/{URL_SEGMENT[kind]}/@{owner}/{slug}"

    def public_url(self, path: str) -> str:
        return f"{self.options.preview_origin.rstrip('/')}{path}/"

    # -- starting and stopping apps --------------------------------------------------------
    async def _environment(
        self, workspace: Path, project_id: str, names: list[str] | None = None
    ) -> dict[str, str]:
        secret_env = await self.secrets.project_env(project_id)
        if names is not None:
            secret_env = {k: v for k, v in secret_env.items() if k in names}
        env = base_environment(project_environment(workspace, secret_env))
        database = env.get("DATABASE_URL", "")
        if database.startswith("sqlite:///"):
            # The project's own database folder may not exist before its first command.
            folder = Path(database.removeprefix("sqlite:///")).parent
            if folder.resolve().is_relative_to(workspace.resolve()):
                await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        # Without a project venv, "python" is the server's own interpreter.
        env["PATH"] = f"{env['PATH']}:{Path(sys.executable).parent}"
        return env

    def _python(self, workspace: Path) -> str:
        venv_python = workspace / ".venv" / "bin" / "python"
        return str(venv_python) if venv_python.exists() else sys.executable

    async def _new_app(
        self,
        project: ProjectContext,
        *,
        kind: str,
        spec: RunSpec,
        cwd: Path,
        env: dict[str, str],
        created_by: str,
        deployment_id: str,
        release: Release | None = None,
    ) -> LiveApp:
        key = pysecrets.token_urlsafe(16)
        base_path = f"{self.entry_path(kind, project.owner, project.slug)}/~{key}"
        logs = LogBuffer(self.options.log_lines)
        holder: list[LiveApp] = []

        def on_state(_supervisor: Supervisor) -> None:
            if holder:
                self._persist(holder[0])
                self._routes_changed()  # its port may have changed (or gone)

        # The mark by which a restarted server finds this app if it outlives a crash.
        env = {**env, APP_MARKER: app_marker(self.options.server_tag, deployment_id)}
        supervisor = Supervisor(
            AppLaunch(
                spec=spec,
                cwd=cwd,
                env=env,
                base_path=base_path,
                python=self._python(project.workspace),
                shell=shutil.which("bash") or "/bin/sh",
                # A release runs from its own folder but keeps the project's .venv and
                # database: both are writable, the workspace first.
                writable=tuple(dict.fromkeys((project.workspace, cwd))),
            ),
            logs=logs,
            options=self.options.supervisor,
            launcher=self.options.launcher,
            retry_first=kind == "preview",
            on_state=on_state,
        )
        app = LiveApp(
            id=deployment_id,
            project_id=project.id,
            owner=project.owner,
            slug=project.slug,
            kind=kind,
            key=key,
            base_path=base_path,
            spec=spec,
            supervisor=supervisor,
            logs=logs,
            created_by=created_by,
            created_at=utcnow(),
            release_id=release.id if release else None,
            release_number=release.number if release else None,
        )
        holder.append(app)
        self._apps[app.id] = app
        self._by_key[key] = app
        return app

    def _persist(self, app: LiveApp) -> None:
        if app.persist_task is not None and not app.persist_task.done():
            app.persist_again = True
            return
        app.persist_task = asyncio.ensure_future(self._write_state(app))

    async def _write_state(self, app: LiveApp) -> None:
        while True:
            app.persist_again = False
            sup = app.supervisor
            values: dict[str, Any] = {
                "status": sup.state,
                "reason": sup.reason,
                "restarts": sup.restarts,
            }
            if sup.state in ("stopped", "failed"):
                values["stopped_at"] = utcnow()

            def write(session: Session, values: dict[str, Any] = values) -> None:
                session.execute(update(Deployment).where(Deployment.id == app.id).values(**values))

            try:
                await self.db.run(write)
            except Exception:
                log.exception("could not record the state of deployment %s", app.id)
            if not app.persist_again:
                return

    async def _stop_app(self, app: LiveApp, reason: str, *, resume: bool = False) -> None:
        """Stop an app and record why. Whoever comes first stops it; later calls return."""
        if self._apps.get(app.id) is not app:
            return
        if self._slots.get((app.project_id, app.slot)) is app:
            del self._slots[(app.project_id, app.slot)]
        self._by_key.pop(app.key, None)
        self._apps.pop(app.id, None)
        self._routes_changed()
        await app.supervisor.stop(reason)
        app.logs.close()
        if app.persist_task is not None:
            with contextlib.suppress(Exception):
                await app.persist_task
        await self.db.run(
            lambda s: s.execute(
                update(Deployment)
                .where(Deployment.id == app.id)
                .values(status="stopped", reason=reason, stopped_at=utcnow(), resume=resume)
            )
        )
        if app.run_dir:
            await asyncio.to_thread(self.store.remove_run_dir, app.run_dir)
        self._recent[app.id] = app
        while len(self._recent) > _RECENT_LOGS:
            self._recent.popitem(last=False)
        log.info("deployment %s of project %s stopped: %s", app.id, app.project_id, reason)

    async def _insert_deployment(
        self, project_id: str, kind: str, spec: RunSpec, user: str, release_id: str | None
    ) -> str:
        def insert(session: Session) -> str:
            row = Deployment(
                project_id=project_id,
                kind=kind,
                release_id=release_id,
                spec=spec.to_json(),
                created_by=user,
                host=self.options.server_id,
            )
            session.add(row)
            session.flush()
            return row.id

        return await self.db.run(insert)

    # -- previews ------------------------------------------------------------------------
    async def start_preview(
        self, user: EcodeUser, project_id: Any, *, command: Any = None, restart: bool = False
    ) -> dict[str, Any]:
        """Run the workspace as a preview; returns once it is healthy or its start failed.

        A preview already running with the same command is kept (it reloads on save by
        itself) unless ``restart`` is asked.
        """
        project = await self.projects.project_context(user, project_id, Role.editor)
        if self.remote_previews is not None:
            return await self.remote_previews.start(
                user, project.id, command if isinstance(command, str) else None, restart
            )
        if not self.previews_here:
            msg = "previews are not run on this server; make a release instead"
            raise NotBuilt(msg)
        spec = await asyncio.to_thread(
            detect_run, project.workspace, template_id=project.template, command=command
        )
        async with self._lock(project.id, "preview"):
            current = self._slots.get((project.id, "preview"))
            if (
                current is not None
                and not restart
                and current.spec == spec
                and current.supervisor.state in (*ACTIVE, "failed")
            ):
                current.supervisor.touch()
                if current.supervisor.state == "failed":
                    current.supervisor.request_reload()
                kept = current
            else:
                kept = None
                if current is not None:
                    await self._stop_app(current, "replaced by a new preview")
                env = await self._environment(project.workspace, project.id)
                dep_id = await self._insert_deployment(
                    project.id, "preview", spec, user.username, None
                )
                app = await self._new_app(
                    project,
                    kind="preview",
                    spec=spec,
                    cwd=project.workspace,
                    env=env,
                    created_by=user.username,
                    deployment_id=dep_id,
                )
                self._slots[(project.id, "preview")] = app
        if kept is not None:
            # Answer for the files as they are now: a save the watcher has not seen yet, or
            # the restart it caused, is waited out (outside the lock: others asking for the
            # same preview meanwhile wait alike instead of queueing behind this one).
            await kept.supervisor.settle(kept.supervisor.options.start_timeout_s)
            return await self._app_json(kept, Role.editor, with_logs=True)
        await self._audit(
            user,
            "deploy.preview",
            project.id,
            app.id,
            {"framework": spec.framework, "source": spec.source},
        )
        await app.supervisor.start()
        return await self._app_json(app, Role.editor, with_logs=True)

    async def preview_status(self, user: EcodeUser, project_id: Any) -> dict[str, Any]:
        """The preview's state, URL, a live health probe and the tail of its log."""
        project = await self.projects.project_context(user, project_id, Role.editor)
        if self.remote_previews is not None:
            return await self.remote_previews.status(user, project.id)
        app = self._slots.get((project.id, "preview"))
        if app is None:
            return {
                "project_id": project.id,
                "running": False,
                "status": "not started",
                "preview": None,
            }
        app.supervisor.touch()
        body = await self._app_json(app, Role.editor, with_logs=True)
        instance = app.supervisor.instance
        code = await instance.check_health() if instance and app.supervisor.port else None
        body["health"] = {"path": app.spec.health or "/", "status": code}
        return {
            "project_id": project.id,
            "running": app.supervisor.port is not None,
            "status": app.supervisor.state,
            "preview": body,
        }

    # -- releases ------------------------------------------------------------------------
    async def deploy_release(
        self, user: EcodeUser, project_id: Any, *, command: Any = None
    ) -> dict[str, Any]:
        """Snapshot the workspace into a new release and make it live if it is healthy."""
        project = await self.projects.project_context(user, project_id, Role.editor)
        if self.before_snapshot is not None:
            await self.before_snapshot(project)
        spec = await asyncio.to_thread(
            detect_run, project.workspace, template_id=project.template, command=command
        )
        env_names = sorted(await self.secrets.project_env(project.id))
        snapshot = await asyncio.to_thread(
            self.store.snapshot, project.workspace, self.options.snapshot_limits
        )

        def insert(session: Session) -> Release:
            number = (
                session.scalar(
                    select(func.max(Release.number)).where(Release.project_id == project.id)
                )
                or 0
            ) + 1
            row = Release(
                project_id=project.id,
                number=number,
                manifest_digest=snapshot.digest,
                file_count=len(snapshot.files),
                total_bytes=snapshot.total_bytes,
                spec=spec.for_release().to_json(),
                env_names=env_names,
                created_by=user.username,
            )
            session.add(row)
            session.flush()
            record_audit(
                session,
                actor=user.username,
                action="deploy.release",
                target_type="release",
                target_id=row.id,
                project_id=project.id,
                remote_ip=user.remote_ip,
                details={"number": number, "files": len(snapshot.files)},
            )
            return row

        for _attempt in range(3):
            try:
                release = await self.db.run(insert)
                break
            except IntegrityError:
                continue  # two releases raced for the same number: take the next one
        else:
            msg = "could not number the release; try again"
            raise Conflict(msg)
        return await self._go_live(user.username, project, release)

    async def rollback(self, user: EcodeUser, project_id: Any, release_id: Any) -> dict[str, Any]:
        """Make an earlier release live again (after its health check passes)."""
        project = await self.projects.project_context(user, project_id, Role.editor)
        release = await self._release_row(project.id, release_id)
        await self._audit(
            user, "deploy.rollback", project.id, release.id, {"number": release.number}
        )
        return await self._go_live(user.username, project, release)

    async def _go_live(
        self, username: str, project: ProjectContext, release: Release
    ) -> dict[str, Any]:
        spec = spec_from_json(release.spec)
        async with self._lock(project.id, "release"):
            dep_id = await self._insert_deployment(
                project.id, "release", spec, username, release.id
            )
            run_dir = self.store.run_dir(dep_id)
            await asyncio.to_thread(self.store.materialize, release.manifest_digest, run_dir)
            env = await self._environment(project.workspace, project.id, release.env_names)
            app = await self._new_app(
                project,
                kind="release",
                spec=spec,
                cwd=run_dir,
                env=env,
                created_by=username,
                deployment_id=dep_id,
                release=release,
            )
            app.run_dir = dep_id
            app.logs.system(f"release {release.number}: {release.file_count} files")
            healthy = await app.supervisor.start()
            if not healthy:
                reason = app.supervisor.reason or "it did not become healthy"
                await self._stop_app(app, f"not made live: {reason}")
                await self._set_release(release.id, status="failed", reason=reason, keep_ready=True)
                body = await self._app_json(app, Role.editor, with_logs=True)
                body["status"] = "failed"
                body["reason"] = reason
                return body
            old = self._slots.get((project.id, "release"))
            # The switch: from here on the proxy sends traffic to the new release.
            self._slots[(project.id, "release")] = app
            await self._set_release(release.id, status="ready", reason=None, live=True)
            if old is not None:
                await self._stop_app(old, f"replaced by release {release.number}")
        log.info("release %s of project %s is live", release.number, project.id)
        return await self._app_json(app, Role.editor)

    async def _set_release(
        self,
        release_id: str,
        *,
        status: str,
        reason: str | None,
        live: bool = False,
        keep_ready: bool = False,
    ) -> None:
        def change(session: Session) -> None:
            row = session.get(Release, release_id)
            if row is None:
                return
            # A release that once passed keeps "ready"; a failed rollback says so in reason.
            if not (keep_ready and row.status == "ready"):
                row.status = status
            row.reason = reason
            if live:
                row.live_at = utcnow()

        await self.db.run(change)

    async def _release_row(self, project_id: str, release_id: Any) -> Release:
        if not isinstance(release_id, str) or not release_id.isalnum():
            msg = "no such release"
            raise NotFound(msg)

        def query(session: Session) -> Release:
            row = session.get(Release, release_id)
            if row is None or row.project_id != project_id:
                msg = "no such release"
                raise NotFound(msg)
            session.expunge(row)
            return row

        return await self.db.run(query)

    async def collect_release_blobs(self, grace_s: float = 3600.0) -> int:
        """Remove stored files no release uses any more (their projects were purged)."""

        def manifests(session: Session) -> list[str]:
            return list(session.scalars(select(Release.manifest_digest).distinct()))

        used = await self.db.run(manifests)
        return await asyncio.to_thread(self.store.collect, used, grace_s)

    async def list_releases_page(
        self, user: EcodeUser, project_id: Any, *, limit: int = 200, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest release first, in pages: the next page's cursor, or None after the last."""
        # Release.number is an INTEGER column (32 bits on PostgreSQL).
        after = decode_cursor(cursor, int, int_max=INT32_MAX)[0] if cursor else None
        project = await self.projects.project_context(user, project_id, Role.viewer)

        def query(session: Session) -> list[Release]:
            stmt = select(Release).where(Release.project_id == project.id)
            if after is not None:
                stmt = stmt.where(Release.number < after)
            rows = list(session.scalars(stmt.order_by(Release.number.desc()).limit(limit + 1)))
            for row in rows:
                session.expunge(row)
            return rows

        rows = await self.db.run(query)
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].number) if len(rows) > limit and page else None
        return [self._release_json(r) for r in page], next_cursor

    async def get_release(
        self, user: EcodeUser, project_id: Any, release_id: Any
    ) -> dict[str, Any]:
        project = await self.projects.project_context(user, project_id, Role.viewer)
        row = await self._release_row(project.id, release_id)
        body = self._release_json(row)
        manifest = await asyncio.to_thread(self.store.manifest, row.manifest_digest)
        body["files"] = [
            {"path": path, "size": entry.size, "sha256": entry.digest}
            for path, entry in sorted(manifest.items())
        ]
        return body

    def _release_json(self, row: Release) -> dict[str, Any]:
        live = self._slots.get((row.project_id, "release"))
        spec = row.spec or {}
        return {
            "id": row.id,
            "project_id": row.project_id,
            "number": row.number,
            "status": row.status,
            "reason": row.reason,
            "manifest": row.manifest_digest,
            "file_count": row.file_count,
            "total_bytes": row.total_bytes,
            "command": spec.get("command"),
            "framework": spec.get("framework"),
            "env_names": list(row.env_names or []),
            "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "live_at": row.live_at.isoformat() if row.live_at else None,
            "live": live is not None and live.release_id == row.id,
        }

    async def _resume_release(self, project_id: str, release_id: str) -> None:
        """After a restart: the release that was live goes live again."""
        try:

            def load(session: Session) -> tuple[Project | None, Release | None]:
                project = session.get(Project, project_id)
                release = session.get(Release, release_id)
                for row in (project, release):
                    if row is not None:
                        session.expunge(row)
                return project, release

            project, release = await self.db.run(load)
            if project is None or release is None or project.deleted_at is not None:
                return
            context = ProjectContext(
                id=project.id,
                owner=project.owner,
                slug=project.slug,
                name=project.name,
                workspace=self.projects.workspace_path(project.id),
                role=Role.owner,
                template=project.template,
                prompt=project.prompt,
                model=project.model,
            )
            result = await self._go_live("system", context, release)
            log.info(
                "resumed release %s of project %s: %s", release.number, project_id, result["status"]
            )
        except Exception:
            log.exception("could not resume the live release of project %s", project_id)

    # -- listing and stopping ----------------------------------------------------------------
    async def list_deployments_page(
        self, user: EcodeUser, project_id: Any, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, in pages: the next page's cursor (the last one's time and id), or
        None after the last page."""
        after = decode_cursor(cursor, datetime, str) if cursor else None
        project = await self.projects.project_context(user, project_id, Role.viewer)
        visibility = await self._visibility(project.id)
        show = may_view_app(visibility, project.role)

        def query(session: Session) -> list[Deployment]:
            stmt = select(Deployment).where(Deployment.project_id == project.id)
            if after is not None:
                when, last_id = after
                stmt = stmt.where(
                    or_(
                        Deployment.created_at < when,
                        and_(Deployment.created_at == when, Deployment.id < last_id),
                    )
                )
            stmt = stmt.order_by(Deployment.created_at.desc(), Deployment.id.desc())
            rows = list(session.scalars(stmt.limit(limit + 1)))
            for row in rows:
                session.expunge(row)
            return rows

        found = await self.db.run(query)
        rows = found[:limit]
        last = rows[-1] if rows else None
        more = len(found) > limit and last is not None
        next_cursor = encode_cursor(last.created_at, last.id) if more and last else None
        out = []
        for row in rows:
            app = self._apps.get(row.id)
            if app is not None:
                out.append(await self._app_json(app, project.role, show_url=show))
            else:
                out.append(self._row_json(row))
        return out, next_cursor

    async def get_deployment(
        self, user: EcodeUser, project_id: Any, deployment_id: Any
    ) -> dict[str, Any]:
        project = await self.projects.project_context(user, project_id, Role.viewer)
        app = self._apps.get(str(deployment_id))
        if app is not None and app.project_id == project.id:
            show = may_view_app(await self._visibility(project.id), project.role)
            return await self._app_json(app, project.role, show_url=show)
        row = await self._deployment_row(project.id, deployment_id)
        return self._row_json(row)

    async def _deployment_row(self, project_id: str | None, deployment_id: Any) -> Deployment:
        if not isinstance(deployment_id, str) or not deployment_id.isalnum():
            msg = "no such deployment"
            raise NotFound(msg)

        def query(session: Session) -> Deployment:
            row = session.get(Deployment, deployment_id)
            if row is None or (project_id is not None and row.project_id != project_id):
                msg = "no such deployment"
                raise NotFound(msg)
            session.expunge(row)
            return row

        return await self.db.run(query)

    async def stop_deployments(
        self, user: EcodeUser, project_id: Any, kind: str | None = None
    ) -> list[dict[str, Any]]:
        if kind is not None and kind not in KINDS:
            msg = "kind must be preview or release"
            raise InvalidInput(msg, field="kind")
        project = await self.projects.project_context(user, project_id, Role.editor)
        stopped = []
        for app in [a for a in self._apps.values() if a.project_id == project.id]:
            if kind is None or app.kind == kind:
                await self._stop_app(app, f"stopped by {user.username}")
                stopped.append(await self._app_json(app, project.role))
        if stopped:
            await self._audit(
                user, "deploy.stop", project.id, None, {"deployments": [d["id"] for d in stopped]}
            )
        return stopped

    async def stop_deployment(
        self, user: EcodeUser, project_id: Any, deployment_id: Any
    ) -> dict[str, Any]:
        project = await self.projects.project_context(user, project_id, Role.editor)
        app = self._apps.get(str(deployment_id))
        if app is None or app.project_id != project.id:
            row = await self._deployment_row(project.id, deployment_id)
            return self._row_json(row)
        await self._stop_app(app, f"stopped by {user.username}")
        await self._audit(user, "deploy.stop", project.id, app.id, {})
        return await self._app_json(app, project.role)

    async def stop_project(self, project_id: str, reason: str = "the project was deleted") -> int:
        """Stop every app of a project (it was deleted). No authorization: callers did it."""
        apps = [a for a in self._apps.values() if a.project_id == project_id]
        for app in apps:
            await self._stop_app(app, reason)
        return len(apps)

    # -- logs ------------------------------------------------------------------------------
    async def logs_for(self, user: EcodeUser, deployment_id: Any) -> LogBuffer:
        """The log of a running or recently stopped deployment (editors: logs may show
        what the app prints of its secrets)."""
        app = self._apps.get(str(deployment_id)) or self._recent.get(str(deployment_id))
        project_id = (
            app.project_id if app else (await self._deployment_row(None, deployment_id)).project_id
        )
        await self.projects.project_context(user, project_id, Role.editor)
        if app is None:
            logs = LogBuffer(1)
            logs.system("this deployment's log is no longer kept (it stopped a while ago)")
            logs.close()
            return logs
        return app.logs

    # -- export ----------------------------------------------------------------------------
    async def export(
        self, user: EcodeUser, project_id: Any, *, release_id: Any = None, archive: bool = False
    ) -> tuple[ExportBundle, bytes | None, str]:
        """The generated files (and, with ``archive``, a .tar.gz of the build context)."""
        project = await self.projects.project_context(user, project_id, Role.viewer)
        env_names = sorted(await self.secrets.project_env(project.id))
        top = project.slug
        if release_id is None:
            spec = await asyncio.to_thread(
                detect_run, project.workspace, template_id=project.template
            )
            return await asyncio.to_thread(
                self._export_folder, project, project.workspace, spec, env_names, archive, top
            )
        release = await self._release_row(project.id, release_id)
        spec = spec_from_json(release.spec)
        top = f"{project.slug}-release-{release.number}"
        with tempfile.TemporaryDirectory(prefix="ecode-export-") as tmp:
            folder = Path(tmp) / "files"
            await asyncio.to_thread(self.store.materialize, release.manifest_digest, folder)
            return await asyncio.to_thread(
                self._export_folder, project, folder, spec, release.env_names, archive, top
            )

    def _export_folder(
        self,
        project: ProjectContext,
        folder: Path,
        spec: RunSpec,
        env_names: list[str],
        archive: bool,
        top: str,
    ) -> tuple[ExportBundle, bytes | None, str]:
        files = dict(walk_files(folder))

        def read_text(rel: str) -> str | None:
            path = files.get(rel)
            if path is None:
                return None
            try:
                return path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return None

        bundle = build_export(
            sorted(files),
            read_text,
            spec,
            project_name=project.name,
            slug=project.slug,
            env_names=env_names,
        )
        data = write_archive(bundle, files, top=top) if archive else None
        return bundle, data, top

    # -- the proxy's questions ------------------------------------------------------------
    def app_for_key(self, key: str) -> LiveApp | None:
        return self._by_key.get(key)

    def gateway_routes(self) -> list[dict[str, Any]]:
        """The keyed routes the app gateway serves: each running app's key, URL and port."""
        routes = []
        for app in self._by_key.values():
            port = app.supervisor.port
            if port is None:
                continue  # starting, restarting or crashed: Jupyter's handler says which
            routes.append(
                {
                    "key": app.key,
                    "segment": URL_SEGMENT[app.kind],
                    "owner": app.owner,
                    "slug": app.slug,
                    "port": port,
                    "base_path": app.base_path,
                    "keep_base": app.spec.base_path_mode == "keep",
                }
            )
        return routes

    def _routes_changed(self) -> None:
        for listener in list(self.route_listeners):
            try:
                listener()
            except Exception:
                log.exception("a route listener failed")

    def app_in_slot(self, project_id: str, kind: str) -> LiveApp | None:
        return self._slots.get((project_id, kind))

    async def route(self, owner: str, slug: str) -> ProjectRoute | None:
        """The project at /@owner/slug (cached for ``access_cache_s``)."""
        now = time.monotonic()
        cached = self._routes.get((owner, slug))
        if cached is not None and cached[0] > now:
            return cached[1]

        def query(session: Session) -> ProjectRoute | None:
            row = session.execute(
                select(Project.id, Project.visibility).where(
                    Project.owner == owner, Project.slug == slug, Project.deleted_at.is_(None)
                )
            ).first()
            return ProjectRoute(row[0], owner, slug, row[1]) if row else None

        found = await self.db.run(query)
        self._routes[(owner, slug)] = (now + self.options.access_cache_s, found)
        return found

    async def role_of(self, project_id: str, username: str) -> Role | None:
        now = time.monotonic()
        cached = self._roles.get((project_id, username))
        if cached is not None and cached[0] > now:
            return cached[1]

        def query(session: Session) -> Role | None:
            role = session.scalar(
                select(ProjectMember.role).where(
                    ProjectMember.project_id == project_id, ProjectMember.username == username
                )
            )
            return Role(role) if role else None

        role = await self.db.run(query)
        self._roles[(project_id, username)] = (now + self.options.access_cache_s, role)
        return role

    async def _visibility(self, project_id: str) -> str:
        value = await self.db.run(
            lambda s: s.scalar(select(Project.visibility).where(Project.id == project_id))
        )
        return str(value or "private")

    # -- housekeeping ------------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("deploy sweep failed")

    async def sweep(self) -> None:
        """Stop idle previews and the apps of projects that were deleted."""
        idle = self.options.idle_timeout_s
        now = time.monotonic()
        for app in list(self._apps.values()):
            if app.kind == "preview" and idle > 0 and now - app.supervisor.last_activity > idle:
                await self._stop_app(app, f"idle for {idle / 60:g} minutes")
        ids = {app.project_id for app in self._apps.values()}
        if not ids:
            return
        alive = set(
            await self.db.run(
                lambda s: list(
                    s.scalars(
                        select(Project.id).where(Project.id.in_(ids), Project.deleted_at.is_(None))
                    )
                )
            )
        )
        for project_id in ids - alive:
            await self.stop_project(project_id)

    async def _audit(
        self,
        user: EcodeUser,
        action: str,
        project_id: str,
        target: str | None,
        details: dict[str, Any],
    ) -> None:
        await self.db.run(
            lambda s: record_audit(
                s,
                actor=user.username,
                action=action,
                target_type="deployment",
                target_id=target,
                project_id=project_id,
                remote_ip=user.remote_ip,
                details=details,
            )
        )

    # -- JSON ------------------------------------------------------------------------------
    async def _app_json(
        self, app: LiveApp, role: Role | None, *, show_url: bool = True, with_logs: bool = False
    ) -> dict[str, Any]:
        sup = app.supervisor
        entry = self.entry_path(app.kind, app.owner, app.slug)
        body: dict[str, Any] = {
            "id": app.id,
            "project_id": app.project_id,
            "kind": app.kind,
            "status": sup.state,
            "reason": sup.reason,
            "running": sup.port is not None,
            "live": self._slots.get((app.project_id, app.kind)) is app,
            "url": self.public_url(app.base_path) if show_url else None,
            # On Jupyter's origin, where the user is signed in: it redirects to the keyed URL
            # (on the preview origin when there is one). Never a sign-in on the app origin.
            "entry_url": f"{entry}/",
            # The app's pages keep an origin of their own at ``url`` (a preview origin whose
            # host name is not Jupyter's): the lab may frame it with allow-same-origin.
            "own_origin": show_url and self.options.preview_own_origin,
            "release": (
                {"id": app.release_id, "number": app.release_number} if app.release_id else None
            ),
            "framework": app.spec.framework,
            "source": app.spec.source,
            "command": app.spec.command,
            "restarts": sup.restarts,
            "created_by": app.created_by,
            "created_at": app.created_at.isoformat(),
            "logs": f"api/ecode/deployments/{app.id}/logs",
        }
        if role is not None and role.allows(Role.editor):
            # Editors may run commands in the project anyway; the agent probes it here.
            body["local_url"] = f"http://127.0.0.1:{sup.port}/" if sup.port else None
        if with_logs and role is not None and role.allows(Role.editor):
            body["log_tail"] = [line.text for line in app.logs.tail(40)]
        return body

    def _row_json(self, row: Deployment) -> dict[str, Any]:
        spec = row.spec or {}
        return {
            "id": row.id,
            "project_id": row.project_id,
            "kind": row.kind,
            "status": row.status,
            "reason": row.reason,
            "running": False,
            "live": False,
            "url": None,
            "entry_url": None,
            "own_origin": False,
            "release": {"id": row.release_id, "number": None} if row.release_id else None,
            "framework": spec.get("framework"),
            "source": spec.get("source"),
            "command": spec.get("command"),
            "restarts": row.restarts,
            "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "stopped_at": row.stopped_at.isoformat() if row.stopped_at else None,
            "logs": f"api/ecode/deployments/{row.id}/logs",
        }


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "*"})


def preview_isolation(origin: str, *, jupyter_ip: str) -> bool:
    """Whether app pages on the preview ``origin`` may keep an origin of their own.

    Cookies are scoped to a host name, not to a port: on ``http://127.0.0.1:{preview_port}``
    an app page with ``allow-same-origin`` could read and set the cookies of a Jupyter at
    ``http://127.0.0.1:8888`` (its ``_xsrf``; a cookie tossed onto Jupyter's paths). So pages
    keep the sandbox on a host name Jupyter is reached by: its own address, and every loopback
    name when it listens on loopback or on all addresses (it prints both ``localhost`` and
    ``127.0.0.1`` URLs)."""
    host = (urlsplit(origin).hostname or "").lower()
    ip = jupyter_ip.lower().strip("[]")
    jupyter_names = {ip}
    if ip in _ANY_ADDRESS or ip in _LOOPBACK_NAMES:
        jupyter_names |= _LOOPBACK_NAMES
    return host not in jupyter_names


def _host_id(identity: str) -> str:
    """``identity`` as a deployment's ``host`` (255 characters at most)."""
    if len(identity) <= 255:
        return identity
    return f"{socket.gethostname()[:200]}:{identity_tag(identity)}"


def create_deploy_manager(
    app: Any,
    context: Any,
    *,
    launcher: Launcher | None = None,
    manager_class: type[DeployManager] = DeployManager,
) -> DeployManager:
    """The DeployManager for an EcodeApp's configuration (its traits named ``app_*``,
    ``preview_origin`` and ``releases_dir``); apps start through ``launcher`` (the sandbox)."""
    serverapp = app.serverapp
    base_url = str(getattr(serverapp, "base_url", "/") or "/")
    origin = str(app.preview_origin).rstrip("/")
    gateway_port = int(getattr(app, "preview_port", 0) or 0)
    if not origin and gateway_port:
        ip = str(getattr(app, "preview_ip", "") or "127.0.0.1")
        host = "127.0.0.1" if ip in ("0.0.0.0", "*") else f"[{ip}]" if ":" in ip else ip
        origin = f"http://{host}:{gateway_port}"
    parts = urlsplit(origin)
    if origin and (
        parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query
    ):
        msg = f"preview_origin must look like https://apps.example.com, not {origin!r}"
        raise EcodeError(msg)
    own_origin = bool(origin) and preview_isolation(
        origin, jupyter_ip=str(getattr(serverapp, "ip", "") or "")
    )
    options = DeployOptions(
        releases_dir=Path(app.releases_dir).expanduser(),
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        preview_origin=origin,
        preview_own_origin=own_origin,
        idle_timeout_s=float(app.app_idle_timeout_s),
        log_lines=int(app.app_log_lines),
        server_id=_host_id(
            server_identity(context.owner_name, str(context.projects.workspace_root))
        ),
        supervisor=SupervisorOptions(start_timeout_s=float(app.app_start_timeout_s)),
        launcher=launcher,
    )
    return manager_class(context.db, context.projects, context.secrets, options)
