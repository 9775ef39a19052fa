"""The system prompt: what the agent is, how it works, and the project it works on."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ..projects.templating import ProjectTemplate

log = logging.getLogger(__name__)

MAX_FILES_LISTED = 200
MAX_README_CHARS = 4000
#: the project's rules files, read into the instructions when present (AGENTS.md is the
#: convention coding agents share; .ecode/rules.md is ecode's own place)
RULES_FILES = ("AGENTS.md", ".ecode/rules.md")
MAX_RULES_CHARS = 8000

INSTRUCTIONS = """\
You are the ecode agent. You turn a request into a working software project inside the
project's workspace, and you act on it only through the tools you are given.

How to work:
1. Begin your first answer with a short plan: a numbered list, one line per step.
2. Create files with write_file; change existing files with edit_file (read_file first and
   copy the exact text to replace). Paths are relative to the project folder.
3. Install what the project needs: Python packages with install_packages (recorded in
   requirements.txt); for a JavaScript or TypeScript project, dependencies in package.json,
   installed with `npm install` through run_command.
4. Write tests for what you build, in the project's own stack, and run them with run_command:
   Python: pytest tests, run with `{test}`. JavaScript/TypeScript (Node): a package.json
   "test" script running real tests (vitest, jest or node --test), run with `npm test`;
   never pytest for a Node project. A notebook project: every notebook must run top to bottom
   in a fresh kernel. Read failures carefully and fix the code until the tests pass.
   When you stop, the suite runs the project's checks itself, whatever you ran: {checks}.
   A project without tests does not pass.
5. Commands must finish on their own: never start a server, a watcher or anything interactive
   in the foreground.{preview_note}
6. When the project works, stop calling tools and answer with a short summary: what you built,
   which files, and how to run it.

Never print, log or write the values of secrets (environment variables the project was given);
refer to them by name. Keep answers short; the user sees every tool call as it happens."""


@dataclass(frozen=True)
class ProjectFacts:
    """What the system prompt says about the project."""

    name: str
    owner: str
    slug: str
    template: ProjectTemplate | None
    files: list[str]
    files_truncated: bool
    readme: str | None
    secret_names: list[str]
    #: (path, text) of each rules file found (RULES_FILES)
    rules: list[tuple[str, str]] = field(default_factory=list)


def verify_command(template: ProjectTemplate | None) -> str:
    return template.test if template is not None else "python -m pytest -q"


def checks_sentence(facts: ProjectFacts) -> str:
    """What verification will run, as far as the workspace and template tell now."""
    template = facts.template
    if "package.json" in facts.files:
        return "`npm test` (and pytest too if there are Python tests)"
    if template is not None and template.entry.endswith(".ipynb"):
        return f"every top-level notebook executed top to bottom, and `{template.test}`"
    if template is not None or any(f.endswith(".py") for f in facts.files):
        return f"`{verify_command(template)}` (exit 5, no tests collected, is a failure)"
    return (
        f"for a Python project `{verify_command(template)}`; for a Node project (a "
        "package.json) `npm test`; for a notebook project each notebook, top to bottom"
    )


def build_system_prompt(facts: ProjectFacts) -> str:
    template = facts.template
    preview_note = ""
    if template is not None and template.run is not None:
        preview_note = (
            " The app is started for you after the tests pass (its run command is "
            f"`{template.run}`)."
        )
    parts = [
        INSTRUCTIONS.format(
            test=verify_command(template), checks=checks_sentence(facts), preview_note=preview_note
        )
    ]
    parts.append(
        f"\n# The project\nName: {facts.name}\nAddress: /ecode/@{facts.owner}/{facts.slug}"
    )
    if template is not None:
        parts.append(
            f"Template: {template.title} ({template.id}) — {template.description}\n"
            f"Entry file: {template.entry}\nTests: `{template.test}`"
            + (f"\nRun: `{template.run}`" if template.run else "")
            + f"\nRequirements: {json.dumps(list(template.requirements))}"
        )
    if facts.secret_names:
        parts.append(
            "Secrets available to commands as environment variables: "
            + ", ".join(sorted(facts.secret_names))
        )
    if facts.files:
        listing = "\n".join(f"- {path}" for path in facts.files[:MAX_FILES_LISTED])
        more = " (more not shown)" if facts.files_truncated else ""
        parts.append(f"\n# Files in the workspace now{more}\n{listing}")
    else:
        parts.append("\n# Files in the workspace now\n(none: the workspace is empty)")
    if facts.readme:
        readme = facts.readme[:MAX_README_CHARS]
        parts.append(f"\n# README.md\n{readme}")
    for path, text in facts.rules:
        # The project members' own instructions for agents: they come after everything the
        # suite says about the project, and win where they are more specific.
        cut = " (cut: the file is longer)" if len(text) > MAX_RULES_CHARS else ""
        parts.append(
            f"\n# The project's rules ({path}{cut}): follow them\n{text[:MAX_RULES_CHARS]}"
        )
    return "\n".join(parts) + "\n"
