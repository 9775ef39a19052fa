"""The agent's settings from ``c.EcodeApp.agent_*``, for the server and the CLI alike."""

from __future__ import annotations

import logging
from typing import Any

from ..context import EcodeContext
from .loop import RunLimits
from .manager import AgentManager, AgentSettings

log = logging.getLogger(__name__)


def settings_from_app(app: Any) -> AgentSettings:
    """AgentSettings from an EcodeApp's traits."""
    return AgentSettings(
        provider=app.agent_provider,
        model=app.agent_model,
        limits=RunLimits(
            max_steps=app.agent_max_steps,
            max_total_tokens=app.agent_max_tokens,
            max_wall_time_s=app.agent_max_wall_time_s,
            max_cost_micros=app.agent_max_cost_micros,
            max_output_tokens=app.agent_max_output_tokens,
            tool_result_chars=app.agent_tool_result_chars,
            max_verify_attempts=app.agent_max_verify_attempts,
            max_turn_retries=app.agent_max_retries,
            retry_backoff_s=app.agent_retry_backoff_s,
            max_retry_after_s=app.agent_max_retry_after_s,
        ),
        max_concurrent_runs=app.agent_max_concurrent_runs,
        allowed_models=tuple(app.allowed_models),
        allowed_models_by_group={
            group: tuple(models) for group, models in app.allowed_models_by_group.items()
        },
        offline_installs=app.agent_offline_installs,
        provider_read_timeout_s=app.agent_read_timeout_s,
        provider_connect_timeout_s=app.agent_connect_timeout_s,
        listen_for_events=app.agent_listen_for_events,
        approval_timeout_s=app.approval_timeout_s,
    )


def create_agent_manager(
    app: Any, context: EcodeContext, *, event_logger: Any = None, runner_id: str | None = None
) -> AgentManager:
    """The agent manager of a server (or of ``jupyter ecode new``) for ``app``'s config."""
    return AgentManager(
        context, settings_from_app(app), event_logger=event_logger, runner_id=runner_id
    )
