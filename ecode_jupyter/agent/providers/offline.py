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

Turns, each answering the previous tool results (the plan item each works on, for clients'
checklists, in brackets)::

    1  plan text            + list_files (what is there already)             [write]
    2  write_file × missing template files                                   [write]
    3  run_command: which of the template's requirements the project's own
       .venv lacks (with installs off: the server's python)                  [install]
       (a Node template: run_command ``npm install``, when allowed, and no step 4)
    4  install_packages: all of them, into .venv, when any is missing        [install]
    5  "done" — the agent's verify step then runs the tests                  [test]
       or, when the install failed: says so and the run ends ``install_failed``
    6+ (only if asked to fix something) says it cannot, without a model

A new prompt on a project it has built (``follow_up``) gets one turn saying it cannot change
the project, and the run ends failed (``offline_cannot_change``) with nothing changed.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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


def requirements_check_command(requirements: list[str], *, own_venv: bool = False) -> str:
    """A shell command printing ``MISSING=[...]``: the requirements ``python`` lacks.

    With ``own_venv`` the project's own ``.venv`` is checked, and a project without one lacks
    them all: whatever the server's ``python`` has is not the project's, and the tests and the
    preview run on the project's venv once it exists.
    """
    reqs = shlex.quote(json.dumps(requirements))
    if not own_venv:
        return f"python -c {shlex.quote(_CHECK_SCRIPT)} {reqs}"
    none = shlex.quote("MISSING=" + json.dumps(requirements))
    return (
        f"if [ -x .venv/bin/python ]; then .venv/bin/python -c {shlex.quote(_CHECK_SCRIPT)} "
        f"{reqs}; else echo 'no .venv yet'; echo {none}; fi"
    )


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


_EXIT_CODE = re.compile(r"^exit code (-?\d+)")


def _failed(messages: list[Message]) -> bool:
    """Whether the last tool call failed: an error result, or a command (npm install) that
    exited non-zero or timed out."""
    last = messages[-1] if messages else None
    if last is None or last.role != "tool":
        return False
    if last.is_error:
        return True
    status = _EXIT_CODE.match(last.text)
    return status is not None and (status.group(1) != "0" or "(timed out)" in last.text[:60])


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


# Why a run of the offline provider ends failed before its tests (a run's ``reason``).
REASON_INSTALL_FAILED = "install_failed"
REASON_CANNOT_CHANGE = "offline_cannot_change"

# The items of plan_text's plan, in order: each turn says which one it works on, so a client
# ticks an item only once the turns after it have begun (not while pip is still running).
ITEM_WRITE, ITEM_INSTALL, ITEM_TEST = 0, 1, 2


def cannot_change_text(template: ProjectTemplate | None) -> str:
    """The offline provider's whole answer to a follow-up prompt on a project it built."""
    what = f"the template {template.id!r}" if template else "its templates"
    return (
        "No AI model is configured, so this run uses the offline provider: no AI is used, and "
        f"it can only build {what} — it cannot change a project to do what you asked. Nothing "
        f"was changed.\n\n{HOW_TO_CONFIGURE}\n"
    )


@dataclass
class _Turn:
    text: str
    calls: list[ToolCall] = field(default_factory=list)
    #: the plan item (0-based) this turn works on; None before there is a plan
    plan_item: int | None = None
    #: the run ends failed with this reason after the turn (nothing else to do)
    stop_reason: str | None = None


class OfflineProvider(Provider):
    """Builds ``template`` for a project, turn by turn. One instance per run.

    ``follow_up`` is a new prompt on a project the offline provider has built already: it
    cannot change the project, so its one turn says so and the run ends failed
    (``offline_cannot_change``) instead of "completed" with nothing done.
    """

    name = "offline"

    def __init__(
        self,
        template: ProjectTemplate | None,
        *,
        project_name: str,
        slug: str,
        reason: str = "",
        install_packages: bool = True,
        follow_up: bool = False,
    ) -> None:
        self.model = OFFLINE_MODEL
        #: None when no template fits the prompt: the run then says so and builds nothing
        self.template = template
        self.files = (
            template_files(template, project_name=project_name, slug=slug) if template else {}
        )
        self.reason = reason
        self.install_packages = install_packages
        self.follow_up = follow_up
        self._phase = 0
        self._calls = 0
        self._item = ITEM_WRITE
        # The next turn, worked out early when the loop asks for its plan item first, and
        # the turn streamed last (the loop reads its stop reason after it ended).
        self._pending: _Turn | None = None
        self._current: _Turn | None = None

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

    def _turn(self, text: str, calls: list[ToolCall] | None = None, *, item: int) -> _Turn:
        self._item = item
        return _Turn(text, list(calls or []), plan_item=item)

    def _next(self, messages: list[Message]) -> _Turn:
        """The next turn; advances the phase."""
        self._phase += 1
        template = self.template
        if template is None:
            return _Turn(self.plan_text(), stop_reason="no_template")
        if self.follow_up:
            return _Turn(cannot_change_text(template), stop_reason=REASON_CANNOT_CHANGE)
        if self._phase == 1:
            return self._turn(
                self.plan_text(), [self._call("list_files", {"recursive": True})], item=ITEM_WRITE
            )
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
                return self._turn(
                    f"Writing {len(missing)} template files{note}.\n", calls, item=ITEM_WRITE
                )
            self._phase += 1  # nothing to write: go straight on to the requirements
        if self._phase == 3 and "package.json" in self.files:
            # A Node template: package.json lists its dependencies; npm installs them all.
            self._phase += 1
            if self.install_packages:
                call = self._call("run_command", {"command": NPM_INSTALL, "timeout_s": 600})
                return self._turn(
                    "Installing the npm dependencies of package.json.\n",
                    [call],
                    item=ITEM_INSTALL,
                )
            return self._turn(
                "Not running npm install: package installs are turned off for the offline "
                "provider on this server. The project's files are in place; its tests need "
                "`npm install` first.\n",
                item=ITEM_TEST,
            )
        if self._phase == 3:
            command = requirements_check_command(
                list(template.requirements), own_venv=self.install_packages
            )
            where = " in the project's .venv" if self.install_packages else ""
            call = self._call("run_command", {"command": command, "timeout_s": 60})
            return self._turn(
                f"Checking which requirements are installed{where}.\n", [call], item=ITEM_INSTALL
            )
        if self._phase == 4:
            missing_reqs = parse_missing(self._last_result(messages))
            if missing_reqs is None:
                missing_reqs = list(template.requirements)
            if missing_reqs and self.install_packages:
                # install_packages puts them into the project's .venv, created now if it was
                # not there: from then on that is the project's python, so it needs all of
                # them (pytest too), not only those it lacked.
                everything = list(template.requirements)
                return self._turn(
                    f"Installing {', '.join(everything)} (missing: {', '.join(missing_reqs)}).\n",
                    [self._call("install_packages", {"packages": everything})],
                    item=ITEM_INSTALL,
                )
            self._phase += 1
            if missing_reqs:
                return self._turn(
                    f"Not installing {', '.join(missing_reqs)}: package installs are turned off "
                    "for the offline provider on this server. The project's files are in "
                    "place; tests that need these packages may be skipped or fail.\n",
                    item=ITEM_TEST,
                )
        if self._phase == 5:
            if self._item == ITEM_INSTALL and _failed(messages):
                # The install failed (or was cut off): the project cannot run, and running
                # its tests would only repeat that. Continuing the run tries again.
                return _Turn(
                    "Installing the requirements failed (its output is above), so the project "
                    "is not ready and its tests were not run. Continue the run to try the "
                    "install again.\n",
                    plan_item=ITEM_INSTALL,
                    stop_reason=REASON_INSTALL_FAILED,
                )
            return self._turn(
                f"The template “{template.title}” is in place. Its tests run next. "
                "(Built by the offline provider — no AI was used.)\n",
                item=ITEM_TEST,
            )
        return self._turn(
            "The offline provider cannot change the project to fix this: it has no AI model. "
            + HOW_TO_CONFIGURE
            + "\n",
            item=self._item,
        )

    def next_plan_item(self, messages: list[Message]) -> int | None:
        if self._pending is None:
            self._pending = self._next(messages)
        return self._pending.plan_item

    @property
    def cannot_build_reason(self) -> str:
        turn = self._current
        return turn.stop_reason if turn is not None and turn.stop_reason else "no_template"

    async def stream_turn(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
    ) -> AsyncIterator[ProviderEvent]:
        turn = self._pending if self._pending is not None else self._next(messages)
        self._pending, self._current = None, turn
        text, calls = turn.text, turn.calls
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
        if turn.stop_reason is not None:
            yield TurnEnd(STOP_CANNOT_BUILD, Usage())
            return
        yield TurnEnd(STOP_TOOL_USE if calls else STOP_END_TURN, Usage())

    async def aclose(self) -> None:
        return None
