"""The ``offline`` provider: no model, no AI — a project template built through the same tools.

With no model configured, a prompt still becomes a working project: this provider picks the
template that fits the prompt (``match_template``) and plays the part of a model that builds
it, one turn at a time, through the agent's ordinary loop — so the run has the same events,
the same tool calls (``list_files``, ``write_file``, ``run_command``, ``install_packages``),
the same verify step and the same billing path (model ``offline``, zero tokens) as a model
run. Its first words say plainly that no AI was used and how to configure a key.

When no template fits the prompt (it names a stack none is built on: Vue, Next.js, PyTorch on
a GPU, ...) the first turn says so and ends with the ``cannot_build`` stop reason: the run ends
failed (``no_template``), with nothing built, instead of an unrelated project.

Turns, each answering the previous tool results::

    1  plan text            + list_files (what is there already)
    2  write_file × missing template files
    3  run_command: which of the template's requirements are missing
       (a Node template: run_command ``npm install``, when allowed, and no step 4)
    4  install_packages (missing ones, when allowed)
    5  "done" — the agent's verify step then runs the tests
    6+ (only if asked to fix something) says it cannot, without a model
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import AsyncIterator
from typing import Any

from ...projects.templating import ProjectTemplate, list_templates, template_files
from .base import (
    STOP_CANNOT_BUILD,
    STOP_END_TURN,
    STOP_TOOL_USE,
    Message,
    Provider,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    TurnEnd,
    Usage,
    UsageReport,
)

log = logging.getLogger(__name__)

OFFLINE_MODEL = "offline"
# A Node template's dependencies, quietly (no audit or funding notes in the feed).
NPM_INSTALL = "npm install --no-audit --no-fund"

HOW_TO_CONFIGURE = (
    "To have an AI model build what you asked for, configure a provider and start a new run: "
    "set ANTHROPIC_API_KEY (Anthropic), or OPENAI_API_KEY (OpenAI), or OPENAI_BASE_URL with "
    "a model name for an OpenAI-compatible server (Ollama, vLLM, Groq, Together, ...)."
)

# Words that name a stack, language or hardware, and the name to tell the user. A prompt
# naming one that no template is built on (names or keywords) gets no template at all.
_STACK_WORDS = {
    "react": "React",
    "vue": "Vue",
    "angular": "Angular",
    "svelte": "Svelte",
    "nextjs": "Next.js",
    "vite": "Vite",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "js": "JavaScript",
    "node": "Node.js",
    "nodejs": "Node.js",
    "express": "Express",
    "npm": "npm",
    "pytorch": "PyTorch",
    "torch": "PyTorch",
    "tensorflow": "TensorFlow",
    "keras": "Keras",
    "jax": "JAX",
    "gpu": "a GPU",
    "cuda": "CUDA",
    "django": "Django",
    "rails": "Ruby on Rails",
    "ruby": "Ruby",
    "golang": "Go",
    "rust": "Rust",
    "java": "Java",
    "kotlin": "Kotlin",
    "swift": "Swift",
    "android": "Android",
    "ios": "iOS",
    "php": "PHP",
    "laravel": "Laravel",
    "flutter": "Flutter",
    "unity": "Unity",
}
# "Next.js" and "Node.js" are one name each, not "next" and "JavaScript".
_DOTTED = {"nextjs": re.compile(r"\bnext\.?js\b"), "nodejs": re.compile(r"\bnode\.?js\b")}


def foreign_stacks(prompt: str) -> list[str]:
    """The stacks a prompt names that no shipped template is built on, in prompt order."""
    lowered = prompt.lower()
    for word, pattern in _DOTTED.items():
        lowered = pattern.sub(f" {word} ", lowered)
    words = re.findall(r"[a-z0-9]+", lowered)
    known = {w for t in list_templates() for w in (*t.names, *t.keywords)}
    found: list[str] = []
    for word in words:
        name = _STACK_WORDS.get(word)
        if name is not None and word not in known and name not in found:
            found.append(name)
    return found


def no_template_text(reason: str) -> str:
    """The offline provider's whole answer when no template fits."""
    built = ", ".join(f"{t.title} ({t.id})" for t in list_templates())
    return (
        "No AI model is configured, so this run uses the offline provider: no AI is used, and "
        f"it can only build its templates. None fits this prompt: {reason}. Nothing was built; "
        f"the templates are: {built}.\n\n{HOW_TO_CONFIGURE}\n"
    )


# Runs with the project's own `python`; prints the requirements it lacks as a JSON list.
# packaging is used when that interpreter has it, else only the distribution name counts.
_CHECK_SCRIPT = """\
import json, re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
missing = []
for raw in json.loads(sys.argv[1]):
    req = Requirement(raw) if Requirement else None
    name = req.name if req else re.split(r"[<>=!~;\\[ ]", raw, maxsplit=1)[0]
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(raw)
        continue
    if req is not None and req.specifier and not req.specifier.contains(version, True):
        missing.append(raw)
print("MISSING=" + json.dumps(missing))
"""


def requirements_check_command(requirements: list[str]) -> str:
    """A shell command printing ``MISSING=[...]``: the requirements ``python`` lacks."""
    return f"python -c {shlex.quote(_CHECK_SCRIPT)} {shlex.quote(json.dumps(requirements))}"


def parse_missing(result_text: str) -> list[str] | None:
    """The list printed by the check command, or None when it did not run properly."""
    for line in result_text.splitlines():
        if line.startswith("MISSING="):
            try:
                value = json.loads(line[len("MISSING=") :])
            except ValueError:
                return None
            return [str(v) for v in value] if isinstance(value, list) else None
    return None


def _existing_paths(result_text: str) -> set[str] | None:
    try:
        listing = json.loads(result_text)
    except ValueError:
        return None
    if not isinstance(listing, dict):
        return None
    return {
        str(entry.get("path"))
        for entry in listing.get("entries") or []
        if isinstance(entry, dict) and entry.get("type") == "file"
    }


class OfflineProvider(Provider):
    """Builds ``template`` for a project, turn by turn. One instance per run."""

    name = "offline"

    def __init__(
        self,
        template: ProjectTemplate | None,
        *,
        project_name: str,
        slug: str,
        reason: str = "",
        install_packages: bool = True,
    ) -> None:
        self.model = OFFLINE_MODEL
        #: None when no template fits the prompt: the run then says so and builds nothing
        self.template = template
        self.files = (
            template_files(template, project_name=project_name, slug=slug) if template else {}
        )
        self.reason = reason
        self.install_packages = install_packages
        self._phase = 0
        self._calls = 0

    def plan_text(self) -> str:
        t = self.template
        if t is None:
            return no_template_text(self.reason)
        why = f" ({self.reason})" if self.reason else ""
        steps = [
            f"Write the {len(self.files)} files of the template “{t.title}” that are missing.",
            "Install the template's requirements that are not installed yet.",
            f"Run the project's tests (`{t.test}`).",
        ]
        numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        return (
            "No AI model is configured, so this run uses the offline provider: no AI is used. "
            f"It builds the template {t.id!r}{why} — {t.description}\n\n"
            f"Plan:\n{numbered}\n\n{HOW_TO_CONFIGURE}\n"
        )

    def _call(self, name: str, arguments: dict[str, Any]) -> ToolCall:
        self._calls += 1
        return ToolCall(f"offline_{self._calls}", name, arguments)

    def _last_result(self, messages: list[Message]) -> str:
        return messages[-1].text if messages and messages[-1].role == "tool" else ""

    def _next(self, messages: list[Message]) -> tuple[str, list[ToolCall]]:
        """Text and tool calls of the next turn; advances the phase."""
        self._phase += 1
        template = self.template
        if template is None:
            return self.plan_text(), []
        if self._phase == 1:
            return self.plan_text(), [self._call("list_files", {"recursive": True})]
        if self._phase == 2:
            existing = _existing_paths(self._last_result(messages)) or set()
            missing = [path for path in self.files if path not in existing]
            if missing:
                calls = [
                    self._call("write_file", {"path": path, "content": self.files[path]})
                    for path in missing
                ]
                kept = len(self.files) - len(missing)
                note = f" ({kept} already there are kept as they are)" if kept else ""
                return f"Writing {len(missing)} template files{note}.\n", calls
            self._phase += 1  # nothing to write: go straight on to the requirements
        if self._phase == 3 and "package.json" in self.files:
            # A Node template: package.json lists its dependencies; npm installs them all.
            self._phase += 1
            if self.install_packages:
                return "Installing the npm dependencies of package.json.\n", [
                    self._call("run_command", {"command": NPM_INSTALL, "timeout_s": 600})
                ]
            return (
                "Not running npm install: package installs are turned off for the offline "
                "provider on this server. The project's files are in place; its tests need "
                "`npm install` first.\n",
                [],
            )
        if self._phase == 3:
            command = requirements_check_command(list(template.requirements))
            return "Checking which requirements are installed.\n", [
                self._call("run_command", {"command": command, "timeout_s": 60})
            ]
        if self._phase == 4:
            missing_reqs = parse_missing(self._last_result(messages))
            if missing_reqs is None:
                missing_reqs = list(template.requirements)
            if missing_reqs and self.install_packages:
                # install_packages puts them into the project's .venv, created now if it was
                # not there: from then on that is the project's python, so it needs all of
                # them (pytest too), not only those the server's python lacked.
                everything = list(template.requirements)
                return (
                    f"Installing {', '.join(everything)} (missing: {', '.join(missing_reqs)}).\n",
                    [self._call("install_packages", {"packages": everything})],
                )
            self._phase += 1
            if missing_reqs:
                return (
                    f"Not installing {', '.join(missing_reqs)}: package installs are turned off "
                    "for the offline provider on this server. The project's files are in "
                    "place; tests that need these packages may be skipped or fail.\n",
                    [],
                )
        if self._phase == 5:
            return (
                f"The template “{template.title}” is in place. Its tests run next. "
                "(Built by the offline provider — no AI was used.)\n",
                [],
            )
        return (
            "The offline provider cannot change the project to fix this: it has no AI model. "
            + HOW_TO_CONFIGURE
            + "\n",
            [],
        )

    async def stream_turn(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
    ) -> AsyncIterator[ProviderEvent]:
        text, calls = self._next(messages)
        offered = {spec.name for spec in tools}
        unavailable = [c.name for c in calls if c.name not in offered]
        if unavailable:
            # A server without these tools cannot be built on; say so instead of failing a call.
            text += f"The tools {', '.join(sorted(set(unavailable)))} are not available here.\n"
            calls = []
        yield UsageReport(Usage())
        yield TextDelta(text)
        for call in calls:
            yield ToolCallReady(call)
        if self.template is None:
            yield TurnEnd(STOP_CANNOT_BUILD, Usage())
            return
        yield TurnEnd(STOP_TOOL_USE if calls else STOP_END_TURN, Usage())

    async def aclose(self) -> None:
        return None
