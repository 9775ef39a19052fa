"""Approvals: a run asks a person (a tool call under an ``ask`` rule, a plan-mode plan) and
waits, bounded, for the answer.

The question is a ``run_approvals`` row and an ``approval.requested`` event carrying the exact
call and the approval's id. Whoever answers (``POST runs/{id}/approvals/{approval_id}``, any
process sharing the database) updates the row once, audited with their name; the waiting run
is woken at once when the answer came through this process, and otherwise finds it by reading
the row every ``poll_s``. The run itself records ``approval.resolved``, so its feed keeps one
writer. Nobody answering within ``timeout_s`` expires the question and ends the run
(``approval_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..audit.log import record_audit
from ..db import Database
from ..db.models import Run, RunApproval, utcnow
from ..exceptions import ApprovalTimedOut, Conflict, InvalidInput, NotFound
from ..identity import EcodeUser
from ..projects.policy import PolicyManager, allow_rule_for
from ..tools.approval import describe_call
from .events import APPROVAL_REQUESTED, APPROVAL_RESOLVED, RunFeed
from .store import ACTIVE_STATUSES
from .toolbox import _trim_args

log = logging.getLogger(__name__)

DECISIONS = ("allow", "deny", "always")
KIND_TOOL = "tool"
KIND_PLAN = "plan"
PENDING = "pending"
#: what each decision makes of the row's status
_STATUS = {"allow": "allowed", "always": "allowed", "deny": "denied"}


#: the longest plan a person may send back edited
MAX_PLAN_CHARS = 20_000
# Beyond the approval timeout while a run waits: its own expiry must come first.
_DEADLINE_SLACK_S = 30.0


@dataclass(frozen=True)
class Answer:
    decision: str  # allow, deny, always
    by: str | None
    #: a plan approval's plan as the person edited it (None: approved as written)
    plan: str | None = None


def approval_to_json(row: RunApproval) -> dict[str, Any]:
    return {
        "id": row.id,
        "run_id": row.run_id,
        "project_id": row.project_id,
        "kind": row.kind,
        "tool": row.tool,
        "arguments": row.arguments,
        "status": row.status,
        "decision": row.decision,
        "decided_by": row.decided_by,
        "created_at": row.created_at.isoformat(),
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
    }


class ApprovalBroker:
    """The questions of this process's runs and the answers to anyone's. One per
    AgentManager; the manager authorizes deciders before :meth:`decide`."""

    def __init__(
        self, db: Database, policies: PolicyManager | None, *, timeout_s: float, poll_s: float = 1.0
    ) -> None:
        self.db = db
        self.policies = policies
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._waiters: dict[str, asyncio.Event] = {}

    def approver(self, feed: RunFeed, project_id: str) -> RunApprover:
        """What one run's tool calls ask through (tools/context.py ``Approver``)."""
        return RunApprover(self, feed, project_id)

    async def ask(
        self,
        feed: RunFeed,
        project_id: str,
        *,
        kind: str,
        tool: str | None,
        arguments: dict[str, Any],
        message: str,
    ) -> Answer:
        """Record the question, show it in the feed and wait for the answer (or time out)."""
        shown = _trim_args(arguments)

        def create(session: Session) -> str:
            row = RunApproval(
                run_id=feed.run_id,
                project_id=project_id,
                kind=kind,
                tool=tool,
                arguments=shown,
                status=PENDING,
            )
            session.add(row)
            session.flush()
            return row.id

        approval_id = await self.db.run(create)
        woken = self._waiters[approval_id] = asyncio.Event()
        try:
            await feed.emit(
                APPROVAL_REQUESTED,
                {
                    "approval_id": approval_id,
                    "kind": kind,
                    "tool": tool,
                    "arguments": shown,
                    "message": message,
                    "timeout_s": self.timeout_s,
                },
            )
            answer = await self._wait(approval_id, woken)
        except asyncio.CancelledError:
            # The run was cancelled while it waited: nobody can answer this one any more.
            closing = asyncio.ensure_future(self._close(approval_id, "cancelled"))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(closing)
            raise
        finally:
            self._waiters.pop(approval_id, None)
        if answer is None:
            await feed.emit(
                APPROVAL_RESOLVED,
                {"approval_id": approval_id, "kind": kind, "tool": tool, "decision": "expired"},
            )
            msg = (
                f"nobody answered the approval request for {message} within "
                f"{self.timeout_s:g} s (c.EcodeApp.approval_timeout_s); the run stopped there"
            )
            raise ApprovalTimedOut(msg, approval_id=approval_id)
        await feed.emit(
            APPROVAL_RESOLVED,
            {
                "approval_id": approval_id,
                "kind": kind,
                "tool": tool,
                "decision": answer.decision,
                "by": answer.by,
                "edited": answer.plan is not None,
            },
        )
        return answer

    async def _wait(self, approval_id: str, woken: asyncio.Event) -> Answer | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s

        def read(session: Session) -> Answer | None:
            row = session.get(RunApproval, approval_id)
            if row is not None and row.status != PENDING and row.decision in DECISIONS:
                edited = (row.arguments or {}).get("edited_plan")
                return Answer(
                    row.decision, row.decided_by, edited if isinstance(edited, str) else None
                )
            return None

        while True:
            answer = await self.db.run(read)
            if answer is not None:
                return answer
            remaining = deadline - loop.time()
            if remaining <= 0:
                # Expire it unless an answer won the race, which then stands.
                if await self._close(approval_id, "expired"):
                    return None
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(self.poll_s, remaining))
            woken.clear()

    async def _close(self, approval_id: str, status: str) -> bool:
        """Mark a still-pending question ``status``; False when an answer came first."""

        def close(session: Session) -> bool:
            result = session.execute(
                update(RunApproval)
                .where(RunApproval.id == approval_id, RunApproval.status == PENDING)
                .values(status=status, decided_at=utcnow())
            )
            return bool(getattr(result, "rowcount", 0))

        return await self.db.run(close)

    async def decide(
        self, user: EcodeUser, run_id: str, approval_id: Any, decision: Any, plan: Any = None
    ) -> dict[str, Any]:
        """Answer a pending question of ``run_id`` (the caller is authorized already).

        ``always`` also puts an allow rule for this exact call first in the project's policy,
        in the same transaction; every answer is audited with who gave it. A plan may be
        approved as the person edited it (``plan``); the run then carries out that one.
        """
        if decision not in DECISIONS:
            msg = f"decision must be one of {', '.join(DECISIONS)}"
            raise InvalidInput(msg, field="decision")
        if plan is not None:
            if not isinstance(plan, str) or not plan.strip() or len(plan) > MAX_PLAN_CHARS:
                msg = f"plan must be the edited plan's text, at most {MAX_PLAN_CHARS} characters"
                raise InvalidInput(msg, field="plan")
            if decision == "deny":
                msg = "an edited plan goes with allow, not deny"
                raise InvalidInput(msg, field="plan")
        if not isinstance(approval_id, str) or not approval_id.isalnum():
            msg = "no such approval"
            raise NotFound(msg)

        def answer(session: Session) -> dict[str, Any]:
            row = session.get(RunApproval, approval_id)
            if row is None or row.run_id != run_id:
                msg = "no such approval"
                raise NotFound(msg)
            if plan is not None and row.kind != KIND_PLAN:
                msg = "only a plan's approval takes an edited plan"
                raise InvalidInput(msg, field="plan")
            run = session.get(Run, run_id)
            if row.status == PENDING and (run is None or run.status not in ACTIVE_STATUSES):
                # Its run ended without closing the question (its server stopped): nobody
                # waits for an answer, so none is taken (a 409 below, saying so).
                row.status, row.decided_at = "cancelled", utcnow()
                session.flush()
            result = session.execute(
                update(RunApproval)
                .where(RunApproval.id == approval_id, RunApproval.status == PENDING)
                .values(
                    status=_STATUS[decision],
                    decision=decision,
                    decided_by=user.username,
                    decided_at=utcnow(),
                    arguments={**(row.arguments or {}), "edited_plan": plan.strip()}
                    if plan is not None
                    else row.arguments,
                )
            )
            if not getattr(result, "rowcount", 0):
                session.refresh(row)
                msg = f"this approval is {row.status} already"
                raise Conflict(msg, status=row.status, decided_by=row.decided_by)
            session.refresh(row)
            if decision == "always" and row.kind == KIND_TOOL and row.tool and self.policies:
                rule = allow_rule_for(row.tool, dict(row.arguments or {}))
                self.policies.add_rule_in(session, row.project_id, rule, user.username)
            record_audit(
                session,
                actor=user.username,
                action="approval.decide",
                target_type="run",
                target_id=run_id,
                project_id=row.project_id,
                remote_ip=user.remote_ip,
                details={
                    "approval_id": row.id,
                    "kind": row.kind,
                    "decision": decision,
                    "edited": plan is not None,
                    "call": describe_call(row.tool, dict(row.arguments or {}))
                    if row.tool
                    else "the plan",
                },
            )
            return approval_to_json(row)

        body = await self.db.run(answer)
        waiter = self._waiters.get(approval_id)
        if waiter is not None:
            waiter.set()  # the run waits in this process: wake it now, not at its next poll
        log.info(
            "run %s: approval %s answered %s by %s", run_id, approval_id, decision, user.username
        )
        return body

    async def list_for_run(self, run_id: str) -> list[dict[str, Any]]:
        def query(session: Session) -> list[dict[str, Any]]:
            rows = session.scalars(
                select(RunApproval)
                .where(RunApproval.run_id == run_id)
                .order_by(RunApproval.created_at)
            )
            return [approval_to_json(r) for r in rows]

        return await self.db.run(query)


class RunApprover:
    """One run's :class:`~ecode_jupyter.tools.context.Approver`, and its plan's question.

    While it waits, the run's wall-time deadline (set by the loop) is pushed past the longest
    wait, and afterwards moved on by the time waited: a person's pace is not the run's.
    """

    def __init__(self, broker: ApprovalBroker, feed: RunFeed, project_id: str) -> None:
        self.broker = broker
        self.feed = feed
        self.project_id = project_id
        self.deadline: asyncio.Timeout | None = None

    async def _ask(self, **question: Any) -> Answer:
        deadline = self.deadline
        before = deadline.when() if deadline is not None else None
        started = asyncio.get_running_loop().time()
        if deadline is not None and before is not None:
            deadline.reschedule(before + self.broker.timeout_s + _DEADLINE_SLACK_S)
        try:
            return await self.broker.ask(self.feed, self.project_id, **question)
        finally:
            if deadline is not None and before is not None:
                waited = asyncio.get_running_loop().time() - started
                deadline.reschedule(before + waited)

    async def approve(self, tool: str, arguments: dict[str, Any]) -> str:
        shown = {k: v for k, v in arguments.items() if k not in ("project", "project_id")}
        answer = await self._ask(
            kind=KIND_TOOL,
            tool=tool,
            arguments=shown,
            message=describe_call(tool, shown),
        )
        return answer.decision

    async def approve_plan(self, plan: str) -> Answer:
        return await self._ask(
            kind=KIND_PLAN,
            tool=None,
            arguments={"plan": plan},
            message="the plan",
        )
