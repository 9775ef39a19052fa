"""AgentManager: starts, runs, cancels and continues agent runs, and serves their feeds.

One per Jupyter server (``ctx.extras["agent"]``) or per ``jupyter ecode new``. A run is a row
in ``runs`` plus an asyncio task on this process's loop; at most one active run per project.
Runs wait as ``queued`` while ``max_concurrent_runs`` others are running.

Liveness across processes: a run's ``summary["runner"]`` names the process running it and
its heartbeat. At start a server marks its own orphans (and runs whose heartbeat went stale)
``interrupted``, with a ``run.interrupted`` event; such a run can be continued by a new run
(``continued_from``) that starts from the files the first one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ..billing.prices import credits_to_micros
from ..context import EcodeContext, server_identity
from ..db.models import Role, Run, utcnow
from ..exceptions import Conflict, EcodeError, InvalidInput, ModelNotAllowed, NotFound
from ..identity import EcodeUser
from ..pages import decode_cursor, encode_cursor
from ..projects import validation as v
from ..projects.manager import ProjectContext
from ..projects.templating import get_template
from ..ratelimit import MODEL_CALLS, RUNS
from . import store
from .approvals import ApprovalBroker
from .events import (
    RUN_CANCELLED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_STARTED,
    EventHub,
    FeedEvent,
    JupyterEventBus,
    RunFeed,
    append_event,
    load_events,
)
from .listener import RunEventListener
from .loop import AgentLoop, LoopResult, RunLimits, StepHook, ToolsHook
from .metering import Metering
from .modes import ASK, BUILD, first_prompt, validate_mode
from .prompt import RULES_FILES, ProjectFacts, build_system_prompt, verify_command
from .providers.base import Message
from .redaction import Redactor
from .selection import ModelChoice, build_provider, choose_model, preload_provider
from .toolbox import AgentToolbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSettings:
    """The agent's configuration (``c.EcodeApp.agent_*``)."""

    provider: str = ""
    model: str = ""
    limits: RunLimits = field(default_factory=RunLimits)
    max_concurrent_runs: int = 4
    #: models users may pick (model or provider:model); empty: all (the offline provider is
    #: always allowed); and more per hub group
    allowed_models: tuple[str, ...] = ()
    allowed_models_by_group: dict[str, tuple[str, ...]] = field(default_factory=dict)
    offline_installs: bool = True
    heartbeat_s: float = 15.0
    #: seconds to wait for bytes from the model (a silent stream fails after this), and to
    #: connect; retries are the loop's (``limits.max_turn_retries``), not the SDK's
    provider_read_timeout_s: float = 120.0
    provider_connect_timeout_s: float = 10.0
    #: on PostgreSQL, hear other processes' run events by LISTEN/NOTIFY instead of polling
    listen_for_events: bool = True
    #: how long a run waits for a person's approval before it fails (approval_timeout)
    approval_timeout_s: float = 600.0


def default_runner_id(owner: str, workspace_root: str) -> str:
    """Stable across restarts of the same server, different between users' servers."""
    return server_identity(owner, workspace_root)


class AgentManager:
    """The agent runs of one process."""

    def __init__(
        self,
        ctx: EcodeContext,
        settings: AgentSettings | None = None,
        *,
        runner_id: str | None = None,
        event_logger: Any = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.settings = settings or AgentSettings()
        self.runner_id = runner_id or default_runner_id(
            ctx.owner_name, str(ctx.projects.workspace_root)
        )
        self.hub = EventHub()
        self.bus = JupyterEventBus(event_logger) if event_logger is not None else None
        self.env = env
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max(1, self.settings.max_concurrent_runs))
        self._stopping = False
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._preload: asyncio.Future[None] | None = None
        #: events of runs in other processes (PostgreSQL); None: feeds poll for them
        self.listener: RunEventListener | None = None
        #: what runs ask people (policy "ask" rules, plan-mode plans) and their answers
        self.approvals = ApprovalBroker(
            self.db,
            ctx.policies,
            timeout_s=self.settings.approval_timeout_s,
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Mark orphaned runs interrupted and start the heartbeat (server start)."""
        await self.recover(own_only_fresh=False)
        # Import the configured provider's SDK now, off the loop, so the first run starts fast.
        with contextlib.suppress(EcodeError):
            choice = choose_model(
                None,
                configured_provider=self.settings.provider,
                configured_model=self.settings.model,
                env=self.env,
            )
            self._preload = asyncio.ensure_future(
                asyncio.to_thread(preload_provider, choice.provider)
            )
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())
        if self.listener is None and self.settings.listen_for_events and not self.db.is_sqlite:
            self.listener = RunEventListener(
                self.db.url, self.hub, self.events_after, self.is_local
            )
            self.listener.start()

    async def stop(self) -> None:
        """Interrupt the runs in flight (they can be continued) and stop the heartbeat."""
        self._stopping = True
        if self._preload is not None:
            self._preload.cancel()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.settings.heartbeat_s * 4)

    async def recover(self, *, own_only_fresh: bool) -> list[str]:
        """Mark orphaned active runs ``interrupted`` with a ``run.interrupted`` event."""
        orphans = await self.db.run(
            lambda s: store.orphaned_runs(
                s, self.runner_id, self.stale_after, own_only_fresh=own_only_fresh
            )
        )
        marked = []
        for ref in orphans:
            if ref.id in self._tasks:
                continue
            event = await self._finish_orphan(
                ref,
                store.INTERRUPTED,
                RUN_INTERRUPTED,
                {
                    "reason": "server_restart",
                    "message": "the server running this run stopped; continue the run to resume",
                },
            )
            if event is not None:
                marked.append(ref.id)
        if marked:
            log.info("marked %d orphaned agent runs interrupted", len(marked))
        billing = self.ctx.extras.get("billing")
        for run_id in marked:
            if billing is None:
                break
            # The call in flight when its server died will never settle: free its hold now.
            try:
                await billing.release_run_holds(run_id, reason="run interrupted")
            except Exception:
                log.exception("releasing the credit holds of run %s failed", run_id)
        return marked

    async def _finish_orphan(
        self, ref: store.RunRef, status: str, type_: str, data: dict[str, Any]
    ) -> FeedEvent | None:
        def finish(session: Session) -> FeedEvent | None:
            run = store.get_run_row(session, ref.id)
            if run.status not in store.ACTIVE_STATUSES:
                return None  # someone else finished it meanwhile
            return append_event(
                session,
                ref.id,
                type_,
                data,
                {"status": status, "reason": data.get("reason"), "finished_at": utcnow()},
            )

        event = await self.db.run(finish)
        if event is not None:
            self.hub.publish(event)
            if self.bus is not None:
                self.bus.emit(event, ref.project_id)
        return event

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                ids = list(self._tasks)
                if ids:
                    requested = await self.db.run(functools.partial(self._beat, ids=ids))
                    for run_id in requested:
                        task = self._tasks.get(run_id)
                        if task is not None:
                            log.info("run %s: cancel requested through another server", run_id)
                            task.cancel()
                await self.recover(own_only_fresh=True)
            except Exception:
                log.exception("agent heartbeat failed")

    def _beat(self, session: Session, *, ids: list[str]) -> list[str]:
        store.heartbeat(session, ids, self.runner_id)
        requested = []
        for run_id in ids:
            run = session.get(Run, run_id)
            if run is not None and (run.summary or {}).get("cancel_requested"):
                requested.append(run_id)
        return requested

    # -- starting runs -------------------------------------------------------------------

    async def start_run(
        self,
        user: EcodeUser,
        project_id: str,
        prompt: Any,
        model: Any = None,
        *,
        continued_from: str | None = None,
        max_credits: Any = None,
        max_cost_micros: int | None = None,
        mode: Any = None,
    ) -> dict[str, Any]:
        """Create a run of ``prompt`` on the project and start it; returns the run as JSON.

        ``max_credits`` (a decimal string, like every credit amount of the API) caps what the
        run may cost: no model call starts whose hold would take it past the cap. ``mode``:
        build (default), plan or ask (agent/modes.py).
        Needs the editor role. Raises Conflict when the project already has an active run.
        """
        clean_mode = validate_mode(mode)
        if max_credits is not None:
            max_cost_micros = max_credits_micros(max_credits)
        clean_prompt = v.validate_prompt(prompt)
        clean_model = v.validate_model(model) if model is not None else None
        project = await self.ctx.projects.project_context(user, project_id, Role.editor)
        # runs.prompt is shown to every member (viewers too) and sent to the model: a secret
        # value pasted into the prompt is kept, and sent, as its name (issue 17).
        secrets = await self.ctx.secrets.project_env(project.id)
        clean_prompt = Redactor(secrets).text(clean_prompt)
        choice = await self.choose(user, clean_model, project_model=project.model)
        check_mode(clean_mode, choice)

        def create(session: Session) -> dict[str, Any]:
            active = store.active_run_of(session, project.id)
            if active is not None:
                msg = f"the project already has an active run ({active.id}); cancel it first"
                raise Conflict(msg, run_id=active.id)
            run = store.create_run(
                session,
                project_id=project.id,
                user=user.username,
                prompt=clean_prompt,
                provider=choice.provider,
                model=choice.model,
                runner=self.runner_id,
                continued_from=continued_from,
                max_cost_micros=max_cost_micros,
                mode=clean_mode,
            )
            return store.run_to_json(run)

        limits = self.ctx.extras.get("limits")
        if limits is not None:
            # Counted before the row exists, so a refused run leaves no row or feed behind
            # (an attempt refused as a conflict below still counts).
            await limits.hit(user, RUNS)
        run = await self.db.run(create)
        run_id = str(run["id"])
        task = asyncio.create_task(self._execute(run_id, user, project, choice))
        self._tasks[run_id] = task

        def forget(_task: asyncio.Task[None]) -> None:
            self._tasks.pop(run_id, None)

        task.add_done_callback(forget)
        log.info(
            "run %s of project %s started by %s (%s %s)",
            run["id"],
            project.id,
            user.username,
            choice.provider,
            choice.model,
        )
        return run

    async def choose(
        self, user: EcodeUser, model: str | None, *, project_model: str | None = None
    ) -> ModelChoice:
        """The provider and model a run would use; an unpriced model is refused (400) and a
        model the admin did not allow this user (403 ``model_not_allowed``) now, not after
        the run started. With no model asked for and a default the user may not use, the
        first allowed model is the default."""
        choice = choose_model(
            model,
            project_model=project_model,
            configured_provider=self.settings.provider,
            configured_model=self.settings.model,
            env=self.env,
        )
        allowed = self.allowed_models(user)
        if allowed is not None and not _is_allowed(choice, allowed):
            if model is None and project_model is None and allowed:
                choice = choose_model(
                    allowed[0], configured_provider=self.settings.provider, env=self.env
                )
            if not _is_allowed(choice, allowed):
                names = ", ".join(allowed) or "none (only offline)"
                msg = (
                    f"the model {choice.model} is not allowed for you here "
                    f"(c.EcodeApp.allowed_models); allowed: {names}"
                )
                raise ModelNotAllowed(msg)
        billing = self.ctx.extras.get("billing")
        if billing is not None:
            metering = Metering(
                billing,
                self.db,
                run_id="",
                username=user.username,
                project_id="",
                model=choice.model,
            )
            await metering.check_model()
        return choice

    def allowed_models(self, user: EcodeUser) -> list[str] | None:
        """The models ``user`` may pick (in the admin's order), or None for every model."""
        settings = self.settings
        if not settings.allowed_models and not settings.allowed_models_by_group:
            return None
        allowed = list(settings.allowed_models)
        for group in user.groups:
            for model in settings.allowed_models_by_group.get(group, ()):
                if model not in allowed:
                    allowed.append(model)
        return allowed

    async def continue_run(
        self, user: EcodeUser, run_id: str, *, max_credits: Any = None
    ) -> dict[str, Any]:
        """A new run that picks up an interrupted, failed or cancelled one, with the run's own
        cost cap or a new one (``max_credits``), in its mode (a plan-first run plans again)."""
        ref = await self._authorized_ref(user, run_id, Role.editor)
        if ref.status not in store.CONTINUABLE_STATUSES:
            msg = (
                "only a failed, cancelled or interrupted run can be continued; "
                f"this one is {ref.status}"
            )
            raise Conflict(msg)
        model = ref.model if ref.provider != "offline" else "offline"
        return await self.start_run(
            user,
            ref.project_id,
            ref.prompt,
            model,
            continued_from=ref.id,
            max_credits=max_credits,
            max_cost_micros=ref.max_cost_micros,
            mode=ref.mode,
        )

    async def cancel_run(self, user: EcodeUser, run_id: str) -> dict[str, Any]:
        """Cancel a run; its running command is killed. A finished run is returned as is."""
        ref = await self._authorized_ref(user, run_id, Role.editor)
        task = self._tasks.get(ref.id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=30)
        elif ref.status in store.ACTIVE_STATUSES:
            await self._cancel_elsewhere(ref, user)
        return await self.get_run(user, run_id)

    async def _cancel_elsewhere(self, ref: store.RunRef, user: EcodeUser) -> None:
        """A run this process is not running: ask its runner, or end it if nobody runs it."""

        def request(session: Session) -> bool:
            run = store.get_run_row(session, ref.id)
            info = (run.summary or {}).get("runner") or {}
            beat = store._parse_time(info.get("heartbeat"))
            stale = beat is None or utcnow() - beat > self.stale_after
            if not stale and info.get("id") != self.runner_id:
                run.summary = {**(run.summary or {}), "cancel_requested": user.username}
                return False
            return True

        if await self.db.run(request):
            await self._finish_orphan(
                ref,
                store.CANCELLED,
                RUN_CANCELLED,
                {
                    "reason": "cancelled",
                    "by": user.username,
                },
            )

    # -- approvals -----------------------------------------------------------------------

    async def decide_approval(
        self, user: EcodeUser, run_id: Any, approval_id: Any, decision: Any, plan: Any = None
    ) -> dict[str, Any]:
        """Answer a run's approval request: editors and owners of its project only (a
        stranger gets 404, a viewer 403). Audited with who answered. ``plan``: a plan
        approved as the person edited it."""
        ref = await self._authorized_ref(user, run_id, Role.editor)
        return await self.approvals.decide(user, ref.id, approval_id, decision, plan)

    async def list_approvals(self, user: EcodeUser, run_id: Any) -> list[dict[str, Any]]:
        """A run's approval requests and their answers (whoever may read its feed)."""
        ref = await self._authorized_ref(user, run_id, Role.viewer)
        return await self.approvals.list_for_run(ref.id)

    # -- reading -------------------------------------------------------------------------

    async def _authorized_ref(self, user: EcodeUser, run_id: Any, need: Role) -> store.RunRef:
        ref = await self.db.run(lambda s: store.run_ref(s, run_id))
        # Strangers to the project get the same answer as for a run that does not exist.
        try:
            await self.ctx.projects.project_context(user, ref.project_id, Role.viewer)
        except NotFound:
            msg = "no such run"
            raise NotFound(msg) from None
        if need is not Role.viewer:
            await self.ctx.projects.project_context(user, ref.project_id, need)
        return ref

    async def get_run(self, user: EcodeUser, run_id: Any) -> dict[str, Any]:
        await self._authorized_ref(user, run_id, Role.viewer)
        return await self.db.run(lambda s: store.run_to_json(store.get_run_row(s, run_id)))

    async def list_runs(
        self, user: EcodeUser, project_id: str, *, limit: int = 50
    ) -> list[dict[str, Any]]:
        project = await self.ctx.projects.project_context(user, project_id, Role.viewer)
        return await self.db.run(lambda s: store.list_runs(s, project.id, limit))

    async def list_runs_page(
        self, user: EcodeUser, project_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``list_runs`` (newest first) and the next page's cursor (None after
        the last)."""
        after: tuple[datetime, str] | None = None
        if cursor:
            when, run_id = decode_cursor(cursor, datetime, str)
            after = (when, run_id)
        project = await self.ctx.projects.project_context(user, project_id, Role.viewer)
        runs, last = await self.db.run(lambda s: store.list_runs_page(s, project.id, limit, after))
        return runs, encode_cursor(*last) if last else None

    async def authorize_feed(self, user: EcodeUser, run_id: Any) -> store.RunRef:
        """The run, if ``user`` may read its feed (viewer on the project)."""
        return await self._authorized_ref(user, run_id, Role.viewer)

    async def events_after(self, run_id: str, after: int, limit: int = 500) -> list[FeedEvent]:
        """Recorded events with ``seq > after`` (no authorization: callers checked it)."""
        return await self.db.run(lambda s: load_events(s, run_id, after, limit))

    async def run_status(self, run_id: str) -> str:
        return await self.db.run(lambda s: store.get_run_row(s, run_id).status)

    def is_local(self, run_id: str) -> bool:
        return run_id in self._tasks

    @property
    def hears_other_processes(self) -> bool:
        """Whether events other processes record reach this process's hub unasked (LISTEN)."""
        return self.listener is not None and self.listener.connected

    async def wait(self, run_id: str) -> None:
        """Wait until this process's task for the run has ended (no-op when there is none)."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait({task})

    # -- running -------------------------------------------------------------------------

    async def _execute(
        self, run_id: str, user: EcodeUser, project: ProjectContext, choice: ModelChoice
    ) -> None:
        secrets: dict[str, str] = {}
        try:
            secrets = await self.ctx.secrets.project_env(project.id)
        except Exception:
            log.exception("run %s: reading the project's secrets failed", run_id)
        feed = RunFeed(
            self.db, self.hub, run_id, project.id, redactor=Redactor(secrets), bus=self.bus
        )
        try:
            async with self._slots:
                ref = await self.db.run(lambda s: store.run_ref(s, run_id))
                await feed.emit(
                    RUN_STARTED,
                    {
                        "prompt": ref.prompt,
                        "provider": choice.provider,
                        "model": choice.model,
                        "project_id": project.id,
                        "continued_from": ref.continued_from,
                    },
                    changes={"status": store.RUNNING, "started_at": utcnow()},
                )
                result = await self._drive(ref, user, project, choice, feed, secrets)
                await self._end(feed, result)
        except asyncio.CancelledError:
            await self._end_cancelled(feed)
            raise
        except Exception as exc:
            log.exception("run %s failed unexpectedly", run_id)
            message = exc.message if isinstance(exc, EcodeError) else "internal error"
            reason = exc.code if isinstance(exc, EcodeError) else "internal"
            await self._end(feed, LoopResult("failed", reason, message))

    async def _drive(
        self,
        ref: store.RunRef,
        user: EcodeUser,
        project: ProjectContext,
        choice: ModelChoice,
        feed: RunFeed,
        secrets: dict[str, str],
    ) -> LoopResult:
        layer = self.ctx.extras.get("tools")
        if layer is None:
            return LoopResult("failed", "no_tools", "the tool layer is not installed")
        limits = self.ctx.extras.get("limits")
        approver = self.approvals.approver(feed, project.id)
        toolbox = AgentToolbox(
            layer,
            user=user,
            project_id=project.id,
            feed=feed,
            result_budget_chars=self.settings.limits.tool_result_chars,
            approver=approver,
            read_only=ref.mode == ASK,
        )
        template = get_template(project.template) if project.template else None
        await asyncio.to_thread(preload_provider, choice.provider)
        # A new prompt on a project that was built (or continuing the refusal of one): the
        # offline provider can only build its template, so it must say it cannot make it.
        follow_up = choice.provider == "offline" and await self.db.run(
            lambda s: store.asks_for_a_change(s, ref)
        )
        provider = build_provider(
            choice,
            prompt=ref.prompt,
            project_name=project.name,
            slug=project.slug,
            project_template=project.template,
            offline_installs=self.settings.offline_installs,
            follow_up=follow_up,
            env=self.env,
            timeout=self.settings.provider_read_timeout_s,
            connect_timeout=self.settings.provider_connect_timeout_s,
            # The loop retries, so every wait shows in the feed (see loop.py).
            max_retries=0,
        )
        if template is None and choice.provider == "offline":
            template = getattr(provider, "template", None)
        try:
            facts = await self._project_facts(layer, user, project, template, secrets)
            # Issue 19: the workspace as the run found it, then after every step that called
            # tools; "Undo this run" and "restore to step N" go back to these.
            on_step: StepHook | None = None
            before_tools: ToolsHook | None = None
            checkpoints = self.ctx.extras.get("checkpoints")
            checkpointed = [0]  # the steps with a checkpoint, for a run cut off mid-step
            if checkpoints is not None:
                await checkpoints.take_quietly(
                    project, kind="start", run_id=ref.id, step=0, actor=user.username
                )

                async def checkpoint(step: int, tools: list[str], reported: list[str]) -> None:
                    checkpointed.append(step)
                    await checkpoints.take_quietly(
                        project,
                        kind="step",
                        run_id=ref.id,
                        step=step,
                        tools=tools,
                        reported=reported,
                        actor=user.username,
                    )

                on_step = checkpoint

                async def before(step: int) -> None:
                    # What people changed while the model thought is theirs: a checkpoint of
                    # it (recorded only when something changed) keeps it out of the step's.
                    await checkpoints.take_quietly(
                        project, kind="pre", run_id=ref.id, step=step, actor=user.username
                    )

                before_tools = before
            loop = AgentLoop(
                run_id=ref.id,
                provider=provider,
                toolbox=toolbox,
                feed=feed,
                metering=Metering(
                    self.ctx.extras.get("billing"),
                    self.db,
                    run_id=ref.id,
                    username=user.username,
                    project_id=project.id,
                    model=choice.model,
                    rate_limit=limits.bind(user, MODEL_CALLS) if limits is not None else None,
                    cap_micros=ref.max_cost_micros,
                ),
                system=build_system_prompt(facts),
                messages=await self._first_messages(ref),
                limits=_capped(self.settings.limits, ref.max_cost_micros, mode=ref.mode),
                test_command=verify_command(template),
                serve_command=template.run if template is not None else None,
                on_step=on_step,
                before_tools=before_tools,
                template=template,
                mode=ref.mode,
                approver=approver,
            )
            result: LoopResult | None = None
            try:
                result = await loop.run()
                return result
            finally:
                if (
                    checkpoints is not None
                    and (result is None or result.status != "completed")
                    and loop.step > checkpointed[-1]
                ):
                    # Cut off mid-step (cancelled, timed out, crashed): what its tools did is
                    # the run's too, so undo reverts it ("interrupted" counts as running code).
                    await checkpoints.take_quietly(
                        project,
                        kind="step",
                        run_id=ref.id,
                        step=loop.step,
                        tools=["interrupted"],
                        reported=loop.files_changed,
                        actor=user.username,
                    )
        finally:
            await provider.aclose()

    async def _project_facts(
        self,
        layer: Any,
        user: EcodeUser,
        project: ProjectContext,
        template: Any,
        secrets: dict[str, str],
    ) -> ProjectFacts:
        """What the system prompt tells the model about the project, read through the tools."""
        files: list[str] = []
        truncated = False
        readme = None
        try:
            listing = await layer.call(
                "list_files", {"project": project.id, "recursive": True}, user
            )
            data = listing.structured_content or {}
            files = [e["path"] for e in data.get("entries", []) if e.get("type") == "file"]
            truncated = bool(data.get("truncated"))
        except EcodeError as exc:
            log.info("run on %s: listing files failed: %s", project.id, exc.message)
        if "README.md" in files:
            try:
                result = await layer.call(
                    "read_file", {"project": project.id, "path": "README.md"}, user
                )
                readme = "\n".join(
                    t for b in result.content if isinstance(t := getattr(b, "text", None), str)
                )
            except EcodeError as exc:
                log.info("run on %s: reading README.md failed: %s", project.id, exc.message)
        rules: list[tuple[str, str]] = []
        for path in RULES_FILES:
            # .ecode/ is left out of listings; ask for it by name.
            if path not in files and not path.startswith(".ecode/"):
                continue
            try:
                result = await layer.call("read_file", {"project": project.id, "path": path}, user)
            except EcodeError:
                continue  # absent (or unreadable): no rules from it
            text = "\n".join(
                t for b in result.content if isinstance(t := getattr(b, "text", None), str)
            )
            if text.strip():
                rules.append((path, text))
        redactor = Redactor(secrets)
        return ProjectFacts(
            name=project.name,
            owner=project.owner,
            slug=project.slug,
            template=template,
            files=files,
            files_truncated=truncated,
            readme=redactor.text(readme) if readme else None,
            secret_names=sorted(secrets),
            rules=[(path, redactor.text(text)) for path, text in rules],
        )

    async def _first_messages(self, ref: store.RunRef) -> list[Message]:
        if ref.continued_from is None:
            return [Message.user(first_prompt(ref.prompt, ref.mode))]
        previous = await self.db.run(
            lambda s: store.run_to_json(store.get_run_row(s, ref.continued_from))
        )
        reason = previous.get("reason") or previous["status"]
        tests = (previous.get("summary") or {}).get("tests") or {}
        text = (
            f"Continue this task: {ref.prompt}\n\n"
            f"A previous run ({previous['id']}) stopped before finishing ({previous['status']}: "
            f"{reason}). Its files are in the workspace (listed in the system prompt): check "
            "what is there, finish the work and make the tests pass."
        )
        if tests.get("output_tail"):
            text += (
                f"\n\nIts last test run (`{tests.get('command')}`, exit code "
                f"{tests.get('exit_code')}) ended with:\n{tests['output_tail']}"
            )
        return [Message.user(first_prompt(text, ref.mode))]

    async def _end(self, feed: RunFeed, result: LoopResult) -> None:
        type_ = RUN_COMPLETED if result.status == store.COMPLETED else RUN_FAILED
        data: dict[str, Any] = {"message": result.message, "summary": result.summary}
        if result.reason:
            data["reason"] = result.reason
        await self._emit_final(feed, type_, data, result.status, result.reason, result.summary)

    async def _end_cancelled(self, feed: RunFeed) -> None:
        if feed.finished:
            return  # cancelled while recording its final event, which stands
        if self._stopping:
            type_, status, reason = RUN_INTERRUPTED, store.INTERRUPTED, "server_stop"
            message = "the server stopped during this run; continue the run to resume"
        else:
            type_, status, reason = RUN_CANCELLED, store.CANCELLED, "cancelled"
            message = "the run was cancelled"
        data: dict[str, Any] = {"reason": reason, "message": message}
        # What the run cost up to the cut (its calls are settled by now), so the feed's last
        # word says it, as a completed or failed run's does.
        read = asyncio.ensure_future(
            self.db.run(lambda s: store.run_to_json(store.get_run_row(s, feed.run_id)))
        )
        try:
            # Shielded like the final event itself: a second cancel must not lose it.
            run = await asyncio.shield(read)
        except asyncio.CancelledError:
            run = await read
        except Exception:
            log.exception("run %s: reading its cost for the final event failed", feed.run_id)
            run = {}
        if run:
            data["cost_micros"] = run.get("cost_micros", 0)
            data["usage"] = run.get("usage")
        await self._emit_final(feed, type_, data, status, reason, None)

    async def _emit_final(
        self,
        feed: RunFeed,
        type_: str,
        data: dict[str, Any],
        status: str,
        reason: str | None,
        summary: dict[str, Any] | None,
    ) -> None:
        changes: dict[str, Any] = {"status": status, "reason": reason, "finished_at": utcnow()}
        if summary is not None:
            changes["summary"] = summary
        # The final event must be recorded even while the task is being cancelled.
        task = asyncio.ensure_future(feed.emit(type_, data, changes=changes))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise
        log.info("run %s %s%s", feed.run_id, status, f" ({reason})" if reason else "")


def _is_allowed(choice: ModelChoice, allowed: list[str]) -> bool:
    """Offline always; else the model by its id or as provider:model."""
    if choice.provider == "offline":
        return True
    return choice.model in allowed or f"{choice.provider}:{choice.model}" in allowed


def max_credits_micros(value: Any) -> int | None:
    """A run's cap from the API's ``max_credits`` (a positive decimal string), or None."""
    if value is None:
        return None
    micros = credits_to_micros(value, field="max_credits")
    if micros <= 0:
        msg = "max_credits must be more than 0"
        raise InvalidInput(msg, field="max_credits")
    return micros


def check_mode(mode: str, choice: ModelChoice) -> None:
    """Plan and ask need a model: the offline provider only builds templates (400)."""
    if mode != BUILD and choice.provider == "offline":
        msg = (
            f"mode {mode} needs a model (the offline provider only builds project templates); "
            "set a provider's API key, or use mode build"
        )
        raise InvalidInput(msg, field="mode")


def _capped(limits: RunLimits, cap: int | None, *, mode: str = BUILD) -> RunLimits:
    """The server's limits with the run's own cost cap, the smaller of the two; an ask-mode
    run changes nothing, so there is nothing to verify."""
    if mode == ASK:
        limits = replace(limits, verify=False)
    if cap is None:
        return limits
    server = limits.max_cost_micros
    return replace(limits, max_cost_micros=min(server, cap) if server else cap)
