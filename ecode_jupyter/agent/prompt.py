"""The system prompt: what the agent is, how it works, and the project it works on."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..projects.templating import ProjectTemplate

log = logging.getLogger(__name__)

MAX_FILES_LISTED = 200
MAX_README_CHARS = 4000

INSTRUCTIONS = """\
You are the ecode agent. You turn a request into a working software project inside the
project's workspace, and you act on it only through the tools you are given.

How to work:
1. Begin your first answer with a short plan: a numbered list, one line per step.
2. Create files with write_file; change existing files with edit_file (read_file first and
   copy the exact text to replace). Paths are relative to the project folder.
3. Install what the project needs with install_packages; it is recorded in requirements.txt.
4. Write tests (pytest) for what you build and run them with run_command: `{test}`.
   Read failures carefully and fix the code until the tests pass.
5. Commands must finish on their own: never start a server or anything interactive in the
   foreground.{preview_note}
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


def verify_command(template: ProjectTemplate | None) -> str:
    return template.test if template is not None else "python -m pytest -q"


def build_system_prompt(facts: ProjectFacts) -> str:
    template = facts.template
    preview_note = ""
    if template is not None and template.run is not None:
        preview_note = (
            " The app is started for you after the tests pass (its run command is "
            f"`{template.run}`)."
        )
    parts = [INSTRUCTIONS.format(test=verify_command(template), preview_note=preview_note)]
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
    return "\n".join(parts) + "\n"
