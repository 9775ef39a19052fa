"""Errors raised by ecode_jupyter managers.

Managers raise these, never ``tornado.web.HTTPError``; the handler base turns each into the one
JSON error shape ``{"error": {"code": ..., "message": ...}}`` with its HTTP status.

    EcodeError                  500 internal
     ├── InvalidInput            400 invalid_input
     ├── NotAuthenticated        401 not_authenticated
     ├── Forbidden               403 forbidden
     │    ├── PolicyDenied        403 policy_denied (the project's approval policy, or a person)
     │    └── ApprovalRequired    403 approval_required (an "ask" rule, nobody to ask)
     ├── NotFound                404 not_found
     ├── Conflict                409 conflict
     │    └── SlugTaken          409 slug_taken (carries a free suggestion)
     ├── InsufficientCredits     402 insufficient_credits
     ├── RateLimited             429 rate_limited
     ├── PathOutsideWorkspace    400 path_outside_workspace
     ├── CommandTimeout          408 command_timeout
     ├── ApprovalTimedOut        408 approval_timeout (nobody answered a run's question)
     ├── SandboxUnavailable      503 sandbox_unavailable (sandbox = "required", none usable)
     ├── ProviderError           502 provider_error (agent/providers/errors.py)
     └── SchemaOutOfDate         500 schema_out_of_date (server refuses to start)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class EcodeError(Exception):
    """Base of every error the suite raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidInput(EcodeError):
    status = 400
    code = "invalid_input"


class NotAuthenticated(EcodeError):
    status = 401
    code = "not_authenticated"


class Forbidden(EcodeError):
    status = 403
    code = "forbidden"


class NotFound(EcodeError):
    status = 404
    code = "not_found"


class Conflict(EcodeError):
    status = 409
    code = "conflict"


class SlugTaken(Conflict):
    code = "slug_taken"


class InsufficientCredits(EcodeError):
    status = 402
    code = "insufficient_credits"


class RateLimited(EcodeError):
    """Too many events of one kind for this user in the current window (``ratelimit.py``).

    ``retry_after`` is whole seconds until the window ends (at least 1): handlers send it as
    the ``Retry-After`` header, and it is in the JSON error's details too.
    """

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, **details: Any) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, retry_after=self.retry_after, **details)


class PathOutsideWorkspace(InvalidInput):
    code = "path_outside_workspace"


class CommandTimeout(EcodeError):
    status = 408
    code = "command_timeout"


class SandboxUnavailable(EcodeError):
    """Project code was not run: the sandbox is required and this host cannot provide it."""

    status = 503
    code = "sandbox_unavailable"


class CostCapReached(EcodeError):
    """A run's next model call could take it past its own cost cap (``max_credits``)."""

    status = 402
    code = "max_credits"


class ModelNotAllowed(EcodeError):
    """The admin has not allowed this model for this user (``c.EcodeApp.allowed_models``)."""

    status = 403
    code = "model_not_allowed"


class PolicyDenied(Forbidden):
    """A tool call the project's approval policy refuses, or a person denied."""

    code = "policy_denied"


class ApprovalRequired(Forbidden):
    """A tool call the policy asks a person about, from a caller nobody can answer for (an
    outside MCP client: only agent runs wait for approvals)."""

    code = "approval_required"


class ApprovalTimedOut(EcodeError):
    """Nobody answered a run's approval request in time; the run ends (``approval_timeout``)."""

    status = 408
    code = "approval_timeout"


class NotBuilt(EcodeError):
    """What was asked is not built for this kind of server yet (said plainly, not faked)."""

    status = 501
    code = "not_built"


class SchemaOutOfDate(EcodeError):
    code = "schema_out_of_date"
