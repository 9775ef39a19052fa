"""Which provider and model a run uses, and building it for the run's project.

Precedence for the model: the run's request, then the project's model, then
``c.EcodeApp.agent_model``, then the provider's default. The provider is
``c.EcodeApp.agent_provider`` when set; otherwise a model name may pick it (``offline``,
``anthropic:…``/``openai:…``/``openai-compatible:…``, or ``claude…`` / ``gpt…``), and else the
environment does: ``ANTHROPIC_API_KEY`` → anthropic, ``OPENAI_API_KEY`` → openai,
``OPENAI_BASE_URL`` → openai-compatible, nothing → offline.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidInput
from ..projects.templating import ProjectTemplate, best_match, get_template
from .providers import DEFAULT_MODELS, PROVIDER_NAMES, configured_provider_names, make_provider
from .providers.base import Provider
from .providers.offline import OFFLINE_MODEL, OfflineProvider, foreign_stacks

log = logging.getLogger(__name__)

ALL_PROVIDERS = (*PROVIDER_NAMES, "offline")
_MODEL_HINTS = (
    ("claude", "anthropic"),
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
)


class ModelUnavailable(InvalidInput):
    """A model was asked for by name, and no provider with a key here can run it."""

    status = 409
    code = "model_unavailable"


_KEY_OF = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def _unavailable(model: str, provider: str | None) -> str:
    if provider:
        return (
            f"{model} runs on {provider}, and this server has no {provider} key "
            f"({_KEY_OF.get(provider, 'its API key')}); pick an available model (GET "
            "agent/models) or offline, or ask an admin to add the key"
        )
    return (
        f"no model provider is configured on this server, so {model} cannot run; "
        "pick offline, or ask an admin to add a key"
    )


@dataclass(frozen=True)
class ModelChoice:
    provider: str
    model: str

    def to_json(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model}


def choose_model(
    requested: str | None,
    *,
    project_model: str | None = None,
    configured_provider: str = "",
    configured_model: str = "",
    env: Mapping[str, str] | None = None,
) -> ModelChoice:
    """The provider and model for a new run (see the module docstring for the order)."""
    env = os.environ if env is None else env
    model = requested or project_model or configured_model or ""
    provider = configured_provider
    if ":" in model and model.split(":", 1)[0] in ALL_PROVIDERS:
        provider, model = model.split(":", 1)
    if model == OFFLINE_MODEL:
        provider = "offline"
    available = configured_provider_names(env)
    if not provider:
        lowered = model.lower()
        hinted = next((p for prefix, p in _MODEL_HINTS if lowered.startswith(prefix)), None)
        if hinted in available:
            provider = hinted
        elif requested and model != OFFLINE_MODEL and (hinted or not available):
            # The person picked this model (and may have confirmed its price): running it on
            # another provider, or quietly offline, would not be what they chose.
            raise ModelUnavailable(_unavailable(model, hinted))
        elif available:
            provider = available[0]
        else:
            provider = "offline"
    if provider not in ALL_PROVIDERS:
        msg = f"unknown provider {provider!r}; expected one of {', '.join(ALL_PROVIDERS)}"
        raise InvalidInput(msg)
    if provider == "offline":
        return ModelChoice("offline", OFFLINE_MODEL)
    if not model or model == OFFLINE_MODEL:
        model = DEFAULT_MODELS.get(provider, "")
    if not model:
        msg = f"the {provider} provider needs a model name (c.EcodeApp.agent_model or `model`)"
        raise InvalidInput(msg, field="model")
    return ModelChoice(provider, model)


def offline_template(
    prompt: str, project_template: str | None
) -> tuple[ProjectTemplate | None, str]:
    """The template the offline provider builds and why, or None and why none fits.

    A prompt that names a stack no template is built on ("a Vue todo app", "train a
    PyTorch model on the GPU") gets none, unless it also names a template outright ("a Flask
    API with a Vue frontend" still gets the Flask API, saying Vue is not part of it):
    building an unrelated project would only look like success.
    """
    if project_template:
        return get_template(project_template), "the project's template"
    match = best_match(prompt)
    missing = foreign_stacks(prompt)
    if missing and not match.matched_names:
        return None, f"the prompt asks for {', '.join(missing)}, which no template is built on"
    why = match.explain()
    if missing:
        why += f"; {', '.join(missing)} is not part of it"
    return match.template, why


_PROVIDER_MODULES = {
    "anthropic": "ecode_jupyter.agent.providers.anthropic",
    "openai": "ecode_jupyter.agent.providers.openai",
    "openai-compatible": "ecode_jupyter.agent.providers.openai",
}


def preload_provider(name: str) -> None:
    """Import a provider's SDK. Blocking (the SDKs take seconds to import on a cold start):
    call it in a worker thread so the server's event loop is not held up."""
    module = _PROVIDER_MODULES.get(name)
    if module is not None:
        importlib.import_module(module)


def build_provider(
    choice: ModelChoice,
    *,
    prompt: str,
    project_name: str,
    slug: str,
    project_template: str | None,
    offline_installs: bool = True,
    follow_up: bool = False,
    env: Mapping[str, str] | None = None,
    **opts: Any,
) -> Provider:
    """A provider instance for one run; ``follow_up`` (offline only): a new prompt on a project
    that was built already."""
    if choice.provider == "offline":
        template, reason = offline_template(prompt, project_template)
        return OfflineProvider(
            template,
            project_name=project_name,
            slug=slug,
            reason=reason,
            install_packages=offline_installs,
            follow_up=follow_up,
        )
    return make_provider(choice.provider, choice.model, env=env, **opts)
