"""Checkpoints after agent steps, and putting files back: undo a run, restore to a checkpoint.

Who calls what: the agent (``agent/manager.py``) calls :meth:`CheckpointManager.take` when a
run starts and after every step that called a tool; the REST handlers
(``handlers/checkpoints.py``) call :meth:`list_checkpoints`, :meth:`restore` and
:meth:`undo_run`.

Reverting keeps what people did. For every file to put back, three versions are compared at
write time: ``base`` (what the agent left: the run's last checkpoint, or for a restore the
project's latest one), ``ours`` (the file now, the live document's text when someone has it
open) and ``theirs`` (what the restore wants). Unchanged since ``base``: it becomes ``theirs``.
Changed by a person since: the two changes are merged line by line (:mod:`.merge`); when they
overlap, the file is **left as the person has it** and the answer lists the conflict with the
merge in git's conflict markers, so nothing is lost and nothing half-merged lands in a file a
running app or a collaborator is using. Binary files and the project's database cannot be
merged: changed since, they are a conflict too. Text goes through the workspace's one writer
(``WorkspaceWriter``, the path the agent's ``write_file`` takes), so open documents change
live for every collaborator.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit.log import record_audit
from ..db.models import Role, Run
from ..deploy.releases import FileEntry
from ..exceptions import Conflict, EcodeError, NotFound
from ..identity import EcodeUser
from ..projects.manager import ProjectContext
from ..tools.context import Caller, ToolProject
from ..workspace.writer import WorkspaceWriter, atomic_write_bytes
from .merge import merge3
from .store import PROJECT_DATABASE, CheckpointRecord, CheckpointStore

log = logging.getLogger(__name__)

# The agent's file tools report each file they change; any other tool that is not only a look
# (commands, code in the kernel, package installs) may change any file.
FILE_TOOLS = frozenset({"write_file", "edit_file", "delete_file", "edit_notebook_cell"})
LOOKING_TOOLS = frozenset(
    {"list_files", "read_file", "search_files", "read_notebook", "preview_status", "check_app"}
)
# How much of a conflict's marked merge an answer carries.
CONFLICT_TEXT_CHARS = 20_000


@dataclass
class RevertResult:
    restored: list[str] = field(default_factory=list)  # put back as they were
    merged: list[str] = field(default_factory=list)  # a person's edits kept, the revert merged in
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # left as the person has them
    checkpoint: CheckpointRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "merged": self.merged,
            "conflicts": self.conflicts,
            "checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
        }


class CheckpointManager:
    """The checkpoints of every project of one server, under ``root/<project id>/``."""

    def __init__(self, ctx: Any, root: Path, *, keep: int = 100) -> None:
        self.ctx = ctx
        self.root = root
        self.keep = keep
        self._stores: dict[str, CheckpointStore] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def store(self, project_id: str) -> CheckpointStore:
        store = self._stores.get(project_id)
        if store is None:
            store = self._stores[project_id] = CheckpointStore(self.root / project_id)
        return store

    def _lock(self, project_id: str) -> asyncio.Lock:
        return self._locks.setdefault(project_id, asyncio.Lock())

    # -- taking ------------------------------------------------------------------------

    async def take(
        self,
        project_id: str,
        workspace: Path,
        *,
        kind: str,
        run_id: str | None = None,
        step: int | None = None,
        tools: list[str] | None = None,
        reported: list[str] | None = None,
        actor: str | None = None,
    ) -> CheckpointRecord | None:
        """A checkpoint of the workspace now; ``None`` for a step that changed nothing."""
        store = self.store(project_id)
        ran_code = any(t not in FILE_TOOLS and t not in LOOKING_TOOLS for t in tools or ())
        async with self._lock(project_id):

            def work() -> CheckpointRecord | None:
                previous = store.latest()
                capture = store.capture(workspace)
                rec = store.record(
                    capture,
                    kind=kind,
                    previous=previous,
                    run_id=run_id,
                    step=step,
                    reported=tuple(sorted(set(reported or ()))),
                    ran_code=ran_code,
                    actor=actor,
                )
                # Pruned in batches: collecting reads every kept manifest.
                if rec is not None and rec.number % max(1, self.keep // 10 or 1) == 0:
                    store.prune(self.keep)
                return rec

            return await asyncio.to_thread(work)

    async def take_quietly(self, project: ProjectContext, **kwargs: Any) -> None:
        """:meth:`take` for the agent: a checkpoint that fails is logged, never ends a run."""
        try:
            await self.take(project.id, project.workspace, **kwargs)
        except Exception:
            log.exception("checkpoint of project %s failed", project.id)

    # -- listing -----------------------------------------------------------------------

    async def list_checkpoints(self, user: EcodeUser, project_id: Any) -> list[dict[str, Any]]:
        """The project's checkpoints, newest first, with the paths each changed."""
        project = await self.ctx.projects.project_context(user, project_id, Role.editor)
        store = self.store(project.id)

        def read() -> list[dict[str, Any]]:
            out = []
            before: dict[str, FileEntry] = {}
            for rec in store.list():
                files = store.manifest(rec)
                item = rec.to_json()
                item["changed"] = _changed(before, files)[:200]
                before = files
                out.append(item)
            return out[::-1]

        return await asyncio.to_thread(read)

    # -- putting back ------------------------------------------------------------------

    async def restore(self, user: EcodeUser, project_id: Any, number: Any) -> dict[str, Any]:
        """Put the workspace back as it was at checkpoint ``number``, keeping (merging) what
        people changed since the latest checkpoint."""
        project = await self.ctx.projects.project_context(user, project_id, Role.editor)
        try:
            wanted = int(number)
        except (TypeError, ValueError):
            msg = "no such checkpoint"
            raise NotFound(msg) from None
        await self._refuse_while_running(project.id)
        store = self.store(project.id)
        target = await asyncio.to_thread(store.get, wanted)
        latest = await asyncio.to_thread(store.latest)
        assert latest is not None  # target exists, so some checkpoint does
        base_files = await asyncio.to_thread(store.manifest, latest)
        target_files = await asyncio.to_thread(store.manifest, target)
        paths = _changed(base_files, target_files)
        result = await self._revert(user, project, store, base_files, target_files, paths)
        result.checkpoint = await self.take(
            project.id, project.workspace, kind="restore", actor=user.username
        )
        await self._audit(
            user,
            project,
            "checkpoint.restore",
            "checkpoint",
            str(target.number),
            result,
        )
        return {"project_id": project.id, "restored_to": target.to_json(), **result.to_json()}

    async def undo_run(self, user: EcodeUser, run_id: Any) -> dict[str, Any]:
        """Revert the files run ``run_id`` changed to what they were before it started."""
        run = await self.ctx.db.run(lambda s: s.get(Run, str(run_id)))
        # A stranger learns nothing: the same answer as for a run that does not exist.
        if run is None:
            msg = "no such run"
            raise NotFound(msg)
        try:
            await self.ctx.projects.project_context(user, run.project_id, Role.viewer)
        except NotFound:
            msg = "no such run"
            raise NotFound(msg) from None
        project = await self.ctx.projects.project_context(user, run.project_id, Role.editor)
        if run.status in ("queued", "running"):
            msg = "the run is still going; cancel it first"
            raise Conflict(msg)
        await self._refuse_while_running(project.id)
        store = self.store(project.id)
        records = [
            r
            for r in await asyncio.to_thread(store.list)
            if r.run_id == run.id and r.kind in ("start", "pre", "step")
        ]
        if not records or records[0].kind != "start":
            msg = "this run has no checkpoints (it is older than checkpoints, or they were dropped)"
            raise Conflict(msg)
        result = await self.revert_steps(user, project, store, records)
        result.checkpoint = await self.take(
            project.id, project.workspace, kind="undo", run_id=run.id, actor=user.username
        )
        await self._audit(user, project, "run.undo", "run", run.id, result)
        return {"run_id": run.id, "project_id": project.id, **result.to_json()}

    async def revert_steps(
        self,
        user: EcodeUser,
        project: ProjectContext,
        store: CheckpointStore,
        records: list[CheckpointRecord],
    ) -> RevertResult:
        """Revert the steps among ``records`` (a run's, oldest first, from its start)."""
        steps = await asyncio.to_thread(self._step_changes, store, records)
        # Newest step first, each from what it left back to what it found: edits people made
        # between steps (in a "pre" checkpoint) are not a step's, so they stay.
        result = RevertResult()
        for before, after, paths in reversed(steps):
            todo = [p for p in paths if not any(c["path"] == p for c in result.conflicts)]
            _fold(result, await self._revert(user, project, store, after, before, todo))
        return result

    @staticmethod
    def _step_changes(
        store: CheckpointStore, records: list[CheckpointRecord]
    ) -> list[tuple[dict[str, FileEntry], dict[str, FileEntry], list[str]]]:
        """(files before, files after, paths the run changed) of each step of a run.

        What a step changed: the files its file tools reported, and everything that changed
        in it when it ran code. A file only a person edited meanwhile is not the run's."""
        out = []
        previous = store.manifest(records[0])
        for rec in records[1:]:
            files = store.manifest(rec)
            if rec.kind == "step":
                changed = _changed(previous, files)
                ours = set(changed) if rec.ran_code else set(rec.reported) & set(changed)
                out.append((previous, files, sorted(ours)))
            previous = files
        return out

    async def _refuse_while_running(self, project_id: str) -> None:
        def active(session: Session) -> bool:
            query = select(Run.id).where(
                Run.project_id == project_id, Run.status.in_(("queued", "running"))
            )
            return session.scalar(query.limit(1)) is not None

        if await self.ctx.db.run(active):
            msg = "a run of this project is going; wait for it or cancel it first"
            raise Conflict(msg)

    async def _revert(
        self,
        user: EcodeUser,
        project: ProjectContext,
        store: CheckpointStore,
        base: dict[str, FileEntry],
        theirs: dict[str, FileEntry],
        paths: list[str],
    ) -> RevertResult:
        layer = self.ctx.extras.get("tools")
        workspace = project.workspace.resolve()
        tool_project = ToolProject(project.id, workspace, project.role, env={})
        # The tool layer's writer also tells its listeners (a preview reloads on a change).
        writer: WorkspaceWriter = (
            layer.writer(tool_project, Caller(user=user))
            if layer is not None and hasattr(layer, "writer")
            else WorkspaceWriter(workspace)
        )
        result = RevertResult()
        for path in paths:
            base_bytes = await asyncio.to_thread(store.content, base.get(path))
            want_bytes = await asyncio.to_thread(store.content, theirs.get(path))
            try:
                await self._revert_one(writer, store, path, base_bytes, want_bytes, result)
            except EcodeError as exc:
                result.conflicts.append({"path": path, "reason": exc.message})
            if theirs.get(path) is not None and theirs[path].executable:
                target = workspace / path
                if target.is_file() and not target.is_symlink():
                    os.chmod(target, 0o755)
        log.info(
            "project %s: %d restored, %d merged, %d conflicts",
            project.id,
            len(result.restored),
            len(result.merged),
            len(result.conflicts),
        )
        return result

    async def _revert_one(
        self,
        writer: WorkspaceWriter,
        store: CheckpointStore,
        path: str,
        base: bytes | None,
        theirs: bytes | None,
        result: RevertResult,
    ) -> None:
        if path == PROJECT_DATABASE:
            await asyncio.to_thread(_restore_database, writer.root, store, base, theirs, result)
            return
        texts = [_text(b) for b in (base, theirs)]
        if any(b is not None and t is None for b, t in zip((base, theirs), texts, strict=True)):
            await asyncio.to_thread(_revert_binary, writer.root, path, base, theirs, result)
            return
        base_text, want_text = texts
        notebook = path.endswith(".ipynb")
        if notebook:
            base_text, want_text = _nb_norm(base_text), _nb_norm(want_text)
        try:
            ours_text: str | None = await writer.read_text(path)
        except NotFound:
            ours_text = None
        if notebook and ours_text is not None:
            ours_text = _nb_norm(ours_text)
        if ours_text == want_text:
            return  # already as wanted (a person did it, or the agent's change was undone)
        if ours_text is None or want_text is None:
            # A deletion on one side: only when the file is as the agent left it.
            if ours_text != base_text:
                what = "deleted" if ours_text is None else "edited"
                result.conflicts.append(
                    {
                        "path": path,
                        "reason": f"{what} since the checkpoint; left as it is",
                        "wanted": _cap(want_text),
                    }
                )
                return
            if want_text is None:
                await writer.delete(path)
            else:
                await writer.write_text(path, want_text, allow_empty=True)
            result.restored.append(path)
            return
        outcome: dict[str, Any] = {}
        want: str = want_text

        def transform(current: str | None) -> str:
            # At write time, on the live text: nothing typed meanwhile is overwritten.
            if current is None:
                msg = "deleted since the checkpoint; left deleted"
                raise Conflict(msg)
            now = _nb_norm(current) if notebook else current
            if now == base_text:
                outcome["kind"] = "restored"
                return want
            merged = merge3(base_text or "", now or "", want)
            if merged.clean and (not notebook or _is_json(merged.text)):
                outcome["kind"] = "merged"
                return merged.text
            outcome["conflict"] = "changed since the checkpoint where the restore changes it"
            outcome["marked"] = merged.marked
            return current

        await writer.edit_text(path, transform, allow_empty=True)
        if "conflict" in outcome:
            result.conflicts.append(
                {
                    "path": path,
                    "reason": outcome["conflict"] + "; left as it is",
                    "wanted": _cap(want_text),
                    "merge": _cap(outcome.get("marked")),
                }
            )
        elif outcome.get("kind") == "merged":
            result.merged.append(path)
        else:
            result.restored.append(path)

    async def _audit(
        self,
        user: EcodeUser,
        project: ProjectContext,
        action: str,
        target_type: str,
        target_id: str,
        result: RevertResult,
    ) -> None:
        details = {
            "restored": result.restored[:100],
            "merged": result.merged[:100],
            "conflicts": [c["path"] for c in result.conflicts][:100],
        }

        def write(session: Session) -> None:
            record_audit(
                session,
                actor=user.username,
                action=action,
                target_type=target_type,
                target_id=target_id,
                project_id=project.id,
                remote_ip=user.remote_ip,
                details=details,
            )

        await self.ctx.db.run(write)


def _fold(total: RevertResult, step: RevertResult) -> None:
    """Add one step's revert to the run's: a file is merged if any step merged it, and a
    conflict wins over both (later steps leave that file alone)."""
    for conflict in step.conflicts:
        total.conflicts.append(conflict)
    bad = {c["path"] for c in total.conflicts}
    for path in step.merged:
        if path not in total.merged:
            total.merged.append(path)
    for path in step.restored:
        if path not in total.restored:
            total.restored.append(path)
    total.merged[:] = [p for p in total.merged if p not in bad]
    total.restored[:] = [p for p in total.restored if p not in bad and p not in total.merged]


def _changed(before: dict[str, FileEntry], after: dict[str, FileEntry]) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _nb_norm(text: str | None) -> str | None:
    """A notebook in one layout (the writer's), so Jupyter's and ours compare equal."""
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    except ValueError:
        return text


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _cap(text: str | None) -> str | None:
    if text is None or len(text) <= CONFLICT_TEXT_CHARS:
        return text
    return text[:CONFLICT_TEXT_CHARS] + f"\n[... {len(text) - CONFLICT_TEXT_CHARS} more characters]"


def _revert_binary(
    root: Path, path: str, base: bytes | None, theirs: bytes | None, result: RevertResult
) -> None:
    """A file that is not text: put back only when nobody changed it since."""
    target = root / path
    try:
        ours = target.read_bytes() if target.is_file() and not target.is_symlink() else None
    except OSError:
        ours = None
    if ours == theirs:
        return
    if ours != base:
        result.conflicts.append({"path": path, "reason": "binary, changed since; left as it is"})
        return
    if not target.resolve().is_relative_to(root):
        result.conflicts.append({"path": path, "reason": "outside the workspace; not touched"})
        return
    if theirs is None:
        target.unlink(missing_ok=True)
    else:
        atomic_write_bytes(target, theirs)
    result.restored.append(path)


def _restore_database(
    root: Path,
    store: CheckpointStore,
    base: bytes | None,
    theirs: bytes | None,
    result: RevertResult,
) -> None:
    """The project's database, copied back through SQLite so an app holding it open sees a
    consistent database (not a file swapped under its connection)."""
    target = root / PROJECT_DATABASE
    if (root / ".ecode").is_symlink() or target.is_symlink():
        result.conflicts.append({"path": PROJECT_DATABASE, "reason": "a link; not touched"})
        return
    if theirs is None:
        result.conflicts.append(
            {"path": PROJECT_DATABASE, "reason": "created by the run; kept (delete it yourself)"}
        )
        return
    # Whether it changed since: compare a fresh SQLite copy with what the agent left.
    capture = store.capture(root)
    now = capture.files.get(PROJECT_DATABASE)
    if base is not None and now is not None and store.content(now) != base:
        result.conflicts.append(
            {"path": PROJECT_DATABASE, "reason": "changed since the checkpoint; left as it is"}
        )
        return
    # The checkpoint's copy goes in the store's folder, which project code never sees.
    source_path = store.root / "restore.sqlite3"
    atomic_write_bytes(source_path, theirs)
    try:
        target.parent.mkdir(exist_ok=True)
        source = sqlite3.connect(source_path)
        dest = sqlite3.connect(target)
        try:
            with dest:
                source.backup(dest)
        finally:
            source.close()
            dest.close()
    finally:
        source_path.unlink(missing_ok=True)
    result.restored.append(PROJECT_DATABASE)
