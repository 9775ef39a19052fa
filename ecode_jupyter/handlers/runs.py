"""Agent runs: start, list, read, cancel, continue, and the progress feed.

``WS runs/{id}/events?after=N`` replays the recorded events after N, then sends live ones,
each exactly once and in order, and closes after the run's final event. The same URL without
a WebSocket upgrade answers ``{"events": [...]}`` (replay only) for simple polling clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..agent.events import FeedEvent, Subscription
from ..agent.manager import AgentManager
from ..agent.store import FINAL_STATUSES
from ..context import EcodeContext
from ..exceptions import EcodeError, InvalidInput, NotFound
from ..identity import EcodeUser, resolve_user
from .base import AUTH_RESOURCE, EcodeHandler

log = logging.getLogger(__name__)

PROJECT = r"(?P<project_id>[^/]+)"
RUN = r"(?P<run_id>[^/]+)"
REPLAY_BATCH = 500
# run_events.seq is an INTEGER column: 32 bits on PostgreSQL, where a bigger `after` made the
# query fail (a 500 found by the fuzzer; SQLite's integers are 64-bit and hid it).
MAX_SEQ = 2**31 - 1
# How often a feed re-reads the database while no event arrives in-process: a run of this
# server publishes here at once, and so does one of another server while this one listens for
# them (PostgreSQL LISTEN, agent/listener.py); otherwise it only shows in the database.
LOCAL_POLL_S = 10.0
REMOTE_POLL_S = 1.0


def _agent(ctx: EcodeContext) -> AgentManager:
    return cast(AgentManager, ctx.extras["agent"])


class ProjectRunsHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        # Newest first, in pages: `next_cursor` (None after the last) goes back as `cursor`.
        limit = self.query_int("limit", 50, lo=1, hi=500)
        runs, next_cursor = await _agent(self.ecode).list_runs_page(
            self.ecode_user, project_id, limit=limit, cursor=self.get_query_argument("cursor", None)
        )
        self.finish_json({"runs": runs, "next_cursor": next_cursor})

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        body = self.json_body()
        unknown = set(body) - {"prompt", "model", "max_credits", "mode"}
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        if "prompt" not in body:
            msg = "prompt is required"
            raise InvalidInput(msg, field="prompt")
        run = await _agent(self.ecode).start_run(
            self.ecode_user,
            project_id,
            body["prompt"],
            body.get("model"),
            max_credits=body.get("max_credits"),
            mode=body.get("mode"),
        )
        self.set_header("Location", self.base_url + f"api/ecode/runs/{run['id']}")
        self.finish_json(run, status=201)


class RunHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.finish_json(await _agent(self.ecode).get_run(self.ecode_user, run_id))


class RunCancelHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        self.finish_json(await _agent(self.ecode).cancel_run(self.ecode_user, run_id))


class RunContinueHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        # An empty body continues with the run's own cap; {"max_credits": "1.00"} sets a new one
        # (a run stopped at its cap goes on only with a higher one).
        body = self.json_body() if self.request.body else {}
        unknown = set(body) - {"max_credits"}
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        run = await _agent(self.ecode).continue_run(
            self.ecode_user, run_id, max_credits=body.get("max_credits")
        )
        self.set_header("Location", self.base_url + f"api/ecode/runs/{run['id']}")
        self.finish_json(run, status=201)


class RunApprovalsHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        approvals = await _agent(self.ecode).list_approvals(self.ecode_user, run_id)
        self.finish_json({"approvals": approvals})


class RunApprovalHandler(EcodeHandler):
    """``{"decision": "allow" | "deny" | "always"}`` answers the run's approval request; a
    plan's approval may carry the plan as edited (``"plan": "..."``)."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str, approval_id: str) -> None:
        body = self.json_body()
        if "decision" not in body or set(body) - {"decision", "plan"}:
            msg = 'body must be {"decision": "allow" | "deny" | "always", "plan"?: "..."}'
            raise InvalidInput(msg, field="decision")
        approval = await _agent(self.ecode).decide_approval(
            self.ecode_user, run_id, approval_id, body["decision"], body.get("plan")
        )
        self.finish_json(approval)


class RunEventsHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """The progress feed of one run, over a WebSocket (or as JSON without an upgrade)."""

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self) -> None:
        """Undo JupyterHandler's defaults, which make no sense for a WebSocket."""

    @property
    def ecode(self) -> EcodeContext:
        return cast(EcodeContext, self.settings["ecode"])

    def _ecode_user(self) -> EcodeUser:
        ctx = self.ecode
        user = resolve_user(
            self.current_user,
            self.identity_provider,
            owner_name=ctx.owner_name,
            admin_users=ctx.admin_users,
            owner_is_admin=ctx.owner_is_admin,
        )
        return EcodeUser(
            user.username, user.display_name, user.is_admin, self.request.remote_ip, user.groups
        )

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    @ws_authenticated
    async def get(self, run_id: str) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            self._reply(403, {"error": {"code": "forbidden", "message": "not allowed"}})
            return
        agent = _agent(self.ecode)
        try:
            raw_after = self.get_query_argument("after", "0")
            try:
                after = int(raw_after)
            except ValueError:
                msg = "after must be an integer"
                raise InvalidInput(msg, field="after") from None
            if not 0 <= after <= MAX_SEQ:
                msg = f"after must be between 0 and {MAX_SEQ}"
                raise InvalidInput(msg, field="after")
            ref = await agent.authorize_feed(self._ecode_user(), run_id)
        except EcodeError as exc:
            self._reply(exc.status, exc.to_json())
            return
        self.run_id = ref.id
        self.after = after
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            events = await agent.events_after(ref.id, after, REPLAY_BATCH)
            self._reply(200, {"events": [e.to_json() for e in events]})
            return
        # Subscribe before reading the database: an event recorded in between is then in the
        # replay, in the queue, or both (and sent once, by seq).
        self.subscription: Subscription | None = agent.hub.subscribe(ref.id)
        self._pump: asyncio.Task[None] | None = None
        try:
            await super().get(run_id)
        except BaseException:
            self.subscription.close()
            raise

    def open(self, run_id: str) -> None:
        super().open()
        # Each event is a small message; Nagle's algorithm would hold it back ~40 ms.
        self.set_nodelay(True)
        self._pump = asyncio.create_task(self._send_feed())

    def on_message(self, message: str | bytes) -> None:
        """Clients only listen; anything they send is ignored."""

    def on_close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    async def _send(self, event: FeedEvent) -> bool:
        """Send one event; False when the feed is over (final event sent, or socket gone)."""
        try:
            await self.write_message(json.dumps(event.to_json()))
        except WebSocketClosedError:
            return False
        self.after = event.seq
        if event.terminal:
            self.close(1000, "run finished")
            return False
        return True

    async def _send_recorded(self) -> bool:
        """Send every recorded event after ``self.after``; False when the feed is over."""
        agent = _agent(self.ecode)
        while True:
            batch = await agent.events_after(self.run_id, self.after, REPLAY_BATCH)
            for event in batch:
                if not await self._send(event):
                    return False
            if len(batch) < REPLAY_BATCH:
                return True

    async def _deliver(self, event: FeedEvent) -> bool:
        """Send a live event unless the replay sent it; fill a gap before it from the DB."""
        if event.seq <= self.after:
            return True
        if event.seq > self.after + 1 and not await self._send_recorded():
            return False
        if event.seq > self.after:
            return await self._send(event)
        return True

    async def _send_feed(self) -> None:
        agent = _agent(self.ecode)
        sub = self.subscription
        assert sub is not None
        try:
            if not await self._send_recorded():
                return
            while True:
                heard = agent.is_local(self.run_id) or agent.hears_other_processes
                poll = LOCAL_POLL_S if heard else REMOTE_POLL_S
                event = await sub.get(timeout=poll)
                if event is None:
                    if not await self._send_recorded():
                        return
                    if await agent.run_status(self.run_id) in FINAL_STATUSES:
                        # Every final status comes with a final event; this is a safety net.
                        self.close(1000, "run finished")
                        return
                    continue
                if not await self._deliver(event):
                    return
        except Exception:
            log.exception("run feed %s failed", self.run_id)
            self.close(1011, "feed error")


_ = AUTH_RESOURCE


class AgentModelsHandler(EcodeHandler):
    """What a prompt would run with now: the default provider and model, and the usable
    providers (``offline`` always; the others when a key or base URL is configured)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from ..agent.providers import configured_provider_names

        agent = self.ecode.extras.get("agent")
        if agent is None:
            msg = "the agent is not installed in this server"
            raise NotFound(msg)
        user = self.ecode_user
        choice = await agent.choose(user, None)
        providers = [*configured_provider_names(agent.env), "offline"]
        # null: every priced model; else only these (and offline) may be picked.
        allowed = agent.allowed_models(user)
        self.finish_json({"default": choice.to_json(), "providers": providers, "allowed": allowed})


default_handlers = [
    (r"/api/ecode/agent/models", AgentModelsHandler),
    (rf"/api/ecode/projects/{PROJECT}/runs", ProjectRunsHandler),
    (rf"/api/ecode/runs/{RUN}", RunHandler),
    (rf"/api/ecode/runs/{RUN}/cancel", RunCancelHandler),
    (rf"/api/ecode/runs/{RUN}/continue", RunContinueHandler),
    (rf"/api/ecode/runs/{RUN}/approvals", RunApprovalsHandler),
    (rf"/api/ecode/runs/{RUN}/approvals/(?P<approval_id>[^/]+)", RunApprovalHandler),
    (rf"/api/ecode/runs/{RUN}/events", RunEventsHandler),
]
