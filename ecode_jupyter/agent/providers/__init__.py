"""Model providers behind one interface, and the factory that picks one from configuration.

Keys come from ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN``) and ``OPENAI_API_KEY``;
base URLs from the SDKs' own ``ANTHROPIC_BASE_URL`` and ``OPENAI_BASE_URL``, so pointing a
deployment at an OpenAI-compatible server (Ollama, vLLM, ...) needs no ecode setting. With no
provider configured the caller falls back to the ``offline`` provider, which is not built here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ecode_jupyter.exceptions import InvalidInput

from .base import (
    Message,
    Provider,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    TurnEnd,
    TurnResult,
    Usage,
    UsageReport,
    collect_turn,
    estimate_input_tokens,
    input_token_bound,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODELS",
    "PROVIDER_NAMES",
    "Message",
    "Provider",
    "ProviderError",
    "ProviderEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallReady",
    "ToolSpec",
    "TurnEnd",
    "TurnResult",
    "Usage",
    "UsageReport",
    "collect_turn",
    "configured_provider_names",
    "estimate_input_tokens",
    "input_token_bound",
    "make_provider",
]

#: the model-backed providers this factory builds, in order of preference
PROVIDER_NAMES = ("anthropic", "openai", "openai-compatible")

#: the model used when a run names none; compatible servers have no sensible default
DEFAULT_MODELS: dict[str, str] = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5.4"}

# A compatible server often needs no key, but the SDK refuses an empty one.
_PLACEHOLDER_KEY = "not-needed"


def configured_provider_names(env: Mapping[str, str] | None = None) -> list[str]:
    """The providers usable with this environment, preferred first (empty: use offline).

    ``openai-compatible`` counts as configured when ``OPENAI_BASE_URL`` is set, since local
    servers need no key.
    """
    env = os.environ if env is None else env
    names: list[str] = []
    if env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN"):
        names.append("anthropic")
    if env.get("OPENAI_API_KEY"):
        names.append("openai")
    if env.get("OPENAI_BASE_URL"):
        names.append("openai-compatible")
    return names


def make_provider(
    name: str,
    model: str | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    **opts: Any,
) -> Provider:
    """Build the provider ``name`` for ``model``.

    ``api_key`` and ``base_url`` default to the environment (``env``, else ``os.environ``).
    ``opts`` go to the provider class: ``max_retries`` (SDK retries of 429/5xx/connection
    failures before a stream starts, default 2), ``timeout`` (seconds), and for Anthropic
    ``prompt_caching``, for OpenAI ``max_tokens_field``. Raises :class:`InvalidInput` when
    the provider is unknown or not configured.
    """
    env = os.environ if env is None else env
    if name == "anthropic":
        from .anthropic import AnthropicProvider

        key = api_key or env.get("ANTHROPIC_API_KEY") or None
        token = None if key else env.get("ANTHROPIC_AUTH_TOKEN") or None
        if key is None and token is None:
            msg = "the anthropic provider needs ANTHROPIC_API_KEY (or an api_key)"
            raise InvalidInput(msg)
        return AnthropicProvider(
            model or DEFAULT_MODELS["anthropic"],
            api_key=key,
            auth_token=token,
            base_url=base_url or env.get("ANTHROPIC_BASE_URL") or None,
            **opts,
        )
    if name in ("openai", "openai-compatible"):
        from .openai import OpenAIProvider

        url = base_url or env.get("OPENAI_BASE_URL") or None
        key = api_key or env.get("OPENAI_API_KEY") or None
        if name == "openai":
            if key is None:
                msg = "the openai provider needs OPENAI_API_KEY (or an api_key)"
                raise InvalidInput(msg)
            return OpenAIProvider(
                model or DEFAULT_MODELS["openai"], api_key=key, base_url=url, name=name, **opts
            )
        if url is None or not model:
            msg = "the openai-compatible provider needs a base URL (OPENAI_BASE_URL) and a model"
            raise InvalidInput(msg)
        opts.setdefault("max_tokens_field", "max_tokens")
        return OpenAIProvider(
            model, api_key=key or _PLACEHOLDER_KEY, base_url=url, name=name, **opts
        )
    msg = f"unknown provider {name!r}; expected one of {', '.join(PROVIDER_NAMES)}"
    raise InvalidInput(msg)
