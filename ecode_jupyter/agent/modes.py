"""A run's mode: ``build`` (write, run and verify, as always), ``plan`` (write the plan and
stop for a person's approval; approving goes on with the same run) or ``ask`` (answer a
question about the project with the tools that only look; nothing changes, nothing is
verified).
"""

from __future__ import annotations

from typing import Any

from ..exceptions import InvalidInput

BUILD = "build"
PLAN = "plan"
ASK = "ask"
MODES = (BUILD, PLAN, ASK)

# Added to the user's prompt: what the first turn of each mode must do.
PLAN_FIRST = (
    "\n\nPlan first: answer with a short numbered plan of what you will do, without calling "
    "any tool. A person reviews it; once it is approved you carry it out."
)
ASK_ONLY = (
    "\n\nThis is a question about the project, not a request to change it: look with the "
    "read-only tools you have and answer. Do not try to change anything."
)
PLAN_APPROVED = "The plan is approved. Carry it out now with the tools, then stop."
PLAN_APPROVED_AS_EDITED = (
    "The plan is approved as the user edited it; follow this version, not yours:\n\n{plan}\n\n"
    "Carry it out now with the tools, then stop."
)
PLAN_NOT_YET = "not run: the plan must be approved first; answer with the plan only"


def validate_mode(value: Any) -> str:
    """The API's ``mode`` (default build); anything else is a 400."""
    if value is None:
        return BUILD
    if value not in MODES:
        msg = f"mode must be one of {', '.join(MODES)}"
        raise InvalidInput(msg, field="mode")
    return str(value)


def first_prompt(prompt: str, mode: str) -> str:
    if mode == PLAN:
        return prompt + PLAN_FIRST
    if mode == ASK:
        return prompt + ASK_ONLY
    return prompt
