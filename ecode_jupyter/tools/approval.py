"""The approval policy, applied to every tool call before it runs (``projects/policy.py``).

Called by the tool layer for MCP clients and the agent alike (``ToolLayer``), and by the hub
service's layer, which runs tools elsewhere. A call no rule fits runs; ``deny`` refuses it;
``ask`` waits for the caller's :class:`~ecode_jupyter.tools.context.Approver` (an agent run's
feed and the person who answers there), or is refused when the caller has none.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..exceptions import ApprovalRequired, PolicyDenied
from ..identity import EcodeUser
from ..projects.policy import ALLOW, DENY, Rule, decide
from .context import Approver

log = logging.getLogger(__name__)

# How much of a call an error message quotes.
_SHOWN_CHARS = 200


class PolicySource(Protocol):
    """A project's rules (``PolicyManager``), read on every call so a change applies at once."""

    async def rules_for(self, project_id: str) -> list[Rule]: ...


def describe_call(tool: str, arguments: dict[str, Any]) -> str:
    """``run_command `curl …``` — the call as a person reads it in an error or the feed."""
    shown = {k: v for k, v in arguments.items() if k not in ("project", "project_id")}
    subject = shown.get("command") or shown.get("path") or shown.get("packages")
    text = subject if isinstance(subject, str) else json.dumps(subject or shown, default=str)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 1] + "…"
    return f"{tool} `{text}`"


async def enforce_policy(
    policy: PolicySource | None,
    authorize: Callable[[EcodeUser, str], Awaitable[object]],
    user: EcodeUser,
    approver: Approver | None,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    """Refuse, or wait for a person's approval of, a call the project's policy names.

    ``authorize(user, project_id)`` must raise for a caller who may not see the project, so
    that a stranger learns nothing of its policy (they get the tool's own not_found).
    """
    project_id = arguments.get("project")
    if policy is None or not isinstance(project_id, str):
        return  # no project named: the tool itself refuses the call
    rules = await policy.rules_for(project_id)
    if not rules:
        return
    action, rule = decide(rules, tool, arguments)
    if action == ALLOW:
        return
    await authorize(user, project_id)
    what = describe_call(tool, arguments)
    where = f"rule {json.dumps(rule.to_json())}" if rule is not None else "its rules"
    if action == DENY:
        msg = (
            f"the project's approval policy does not allow {what} ({where}); "
            "do it another way, or ask the project's owner to change the policy"
        )
        raise PolicyDenied(msg, tool=tool)
    if approver is None:
        msg = (
            f"the project's approval policy asks a person to approve {what} ({where}), and "
            "nobody can answer for this client: only agent runs wait for approvals. Ask the "
            "project's owner to allow it in the policy, or do it from an agent run"
        )
        raise ApprovalRequired(msg, tool=tool)
    decision = await approver.approve(tool, arguments)
    log.info("tool %s on project %s: approval %s", tool, project_id, decision)
    if decision not in ("allow", "always"):
        msg = (
            f"a person denied {what}: it was not run. Do not try it again; take another "
            "route to the goal, or explain why it is needed"
        )
        raise PolicyDenied(msg, tool=tool, denied_by_person=True)
