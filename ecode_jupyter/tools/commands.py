"""Command tools: run_command and install_packages.

Commands run in the project workspace with a clean environment (the project's secrets and
``DATABASE_URL`` added, the server's own secrets left out), a time limit, an output cap and
rlimits; their output streams to the caller while they run.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import Field

from ecode_jupyter.exceptions import InvalidInput
from ecode_jupyter.tools.context import Caller, ToolProject, project_environment
from ecode_jupyter.workspace.commands import CommandResult, base_environment, run_command
from ecode_jupyter.workspace.paths import resolve_in_workspace

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

log = logging.getLogger(__name__)

ProjectId = Annotated[str, Field(description="The project id.")]
MAX_PACKAGES = 50
FAILURE_TAIL_CHARS = 4000
# npm names: optional @scope/, lowercase name, optional @version-or-tag.
_NPM_SPEC = re.compile(r"^(@[a-z0-9][\w.~-]*/)?[a-z0-9][\w.~-]*(@[\w.^~<>=*|+ -]+)?$", re.I)


def command_result(result: CommandResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "exit_code": result.exit_code,
        "output": result.output,
        "truncated": result.truncated,
        "timed_out": result.timed_out,
        "duration_s": round(result.duration_s, 3),
    }
    if result.sandbox:
        # One line on how the command was confined (and what of that this host could not do).
        data["sandbox"] = result.sandbox
    return data


def _pip_specs(packages: list[str]) -> list[Requirement]:
    specs = []
    for raw in packages:
        text = raw.strip()
        # An option ("-r /etc/x", "--index-url") smuggled in as a package is refused.
        if not text or text.startswith("-") or "\n" in text:
            msg = f"not a package requirement: {raw!r}"
            raise InvalidInput(msg)
        try:
            specs.append(Requirement(text))
        except InvalidRequirement as exc:
            msg = f"not a package requirement: {raw!r} ({exc})"
            raise InvalidInput(msg) from None
    return specs


def _npm_specs(packages: list[str]) -> list[str]:
    for raw in packages:
        if not _NPM_SPEC.fullmatch(raw.strip()):
            msg = f"not an npm package: {raw!r}"
            raise InvalidInput(msg)
    return [p.strip() for p in packages]


def _merge_requirements(current: str | None, specs: list[Requirement]) -> str:
    """requirements.txt with each spec added, or replacing the line for the same package."""
    lines = (current or "").splitlines()
    for spec in specs:
        name = canonicalize_name(spec.name)
        for i, line in enumerate(lines):
            stripped = line.split("#", 1)[0].strip()
            try:
                existing = Requirement(stripped) if stripped else None
            except InvalidRequirement:
                existing = None
            if existing is not None and canonicalize_name(existing.name) == name:
                # Keep a pinned line unless the new request says something more specific.
                if str(spec) != spec.name or not str(existing.specifier):
                    lines[i] = str(spec)
                break
        else:
            lines.append(str(spec))
    return "\n".join(lines) + "\n"


def _choose_manager(workspace: Path, manager: str) -> str:
    if manager != "auto":
        return manager
    node = (workspace / "package.json").exists()
    python = any((workspace / f).exists() for f in ("requirements.txt", "pyproject.toml"))
    return "npm" if node and not python else "pip"


def register(layer: ToolLayer) -> None:
    settings = layer.settings

    async def run(
        proj: ToolProject,
        caller: Caller,
        command: str | list[str],
        *,
        cwd: Path | None = None,
        timeout_s: float,
        quiet: bool = False,
    ) -> CommandResult:
        return await run_command(
            command,
            cwd=cwd or proj.workspace,
            env=base_environment(project_environment(proj.workspace, _secrets_of(proj))),
            timeout_s=timeout_s,
            output_cap_bytes=settings.command_output_cap_bytes,
            on_output=None if quiet else caller.reporter.output,
            limits=settings.limits,
            launcher=layer.launcher,
            # The whole workspace, also when the command runs in a sub-folder (.venv, data).
            writable=(proj.workspace,),
        )

    # Named run_command on the wire; the Python name keeps the runner it calls visible.
    @layer.mcp.tool(
        name="run_command",
        annotations=ToolAnnotations(destructive_hint=True, open_world_hint=True),
    )
    async def run_command_tool(
        project: ProjectId,
        command: Annotated[str, Field(description="A shell command line (bash).")],
        cwd: Annotated[str, Field(description="Folder to run in, relative.")] = ".",
        timeout_s: Annotated[
            float | None,
            Field(gt=0, description="Time limit in seconds (default 120, at most 1800)."),
        ] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Run a shell command in the project workspace. Output (stdout and stderr, merged) is
        streamed while it runs and capped at 64 KiB in the result (head and tail kept). The
        command and every process it started are killed at the time limit. Do not start a
        server in the foreground here (it would run until the limit): use start_preview."""
        proj, caller = await layer.open(ctx, project, write=True)
        folder = resolve_in_workspace(proj.workspace, cwd)
        if not folder.is_dir():
            msg = f"{cwd} is not a folder"
            raise InvalidInput(msg)
        limit = min(timeout_s or settings.command_timeout_s, settings.command_max_timeout_s)
        await layer.audit(caller, proj, "run_command", {"command": command[:200], "cwd": cwd})
        result = await run(proj, caller, command, cwd=folder, timeout_s=limit)
        return command_result(result)

    @layer.mcp.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=True))
    async def install_packages(
        project: ProjectId,
        packages: Annotated[
            list[str],
            Field(min_length=1, max_length=MAX_PACKAGES, description="e.g. ['flask>=3', 'rich']"),
        ],
        manager: Annotated[
            Literal["auto", "pip", "npm"],
            Field(description="pip (into .venv) or npm; auto picks npm for a Node project."),
        ] = "auto",
        dev: Annotated[bool, Field(description="npm only: a devDependency.")] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Install packages into the project: Python ones into its own virtual environment
        (.venv, created on first use) and recorded in requirements.txt; Node ones with npm,
        recorded in package.json."""
        proj, caller = await layer.open(ctx, project, write=True)
        chosen = _choose_manager(proj.workspace, manager)
        await layer.audit(
            caller, proj, "install_packages", {"manager": chosen, "packages": packages[:20]}
        )
        writer = layer.writer(proj, caller)
        if chosen == "npm":
            npm_specs = _npm_specs(packages)
            npm = shutil.which("npm")
            if npm is None:
                msg = "npm is not installed on this server"
                raise InvalidInput(msg)
            manifest = proj.workspace / "package.json"
            before = manifest.read_text() if manifest.exists() else None
            if before is None:
                await writer.write_text("package.json", json.dumps({"private": True}) + "\n")
                before = manifest.read_text()
            argv = [npm, "install", "--save-dev" if dev else "--save", *npm_specs]
            result = await run(proj, caller, argv, timeout_s=settings.install_timeout_s)
            after = manifest.read_text() if manifest.exists() else None
            await writer.report_external_change("package.json", before, after)
            recorded = "package.json"
        else:
            pip_specs = _pip_specs(packages)
            python = proj.venv / "bin" / "python"
            rebuilt = False
            if not python.exists():
                await caller.reporter.progress("creating the project's virtual environment .venv")
                created = await run(
                    proj,
                    caller,
                    [sys.executable, "-m", "venv", "--clear", str(proj.venv)],
                    timeout_s=settings.install_timeout_s,
                )
                _check(created, "creating .venv")
            elif not _ok(
                await run(
                    proj, caller, [str(python), "-m", "pip", "--version"], timeout_s=60, quiet=True
                )
            ):
                # An install or the venv's creation was cut off (a cancelled run): the venv has
                # no working pip and every later install would fail "No module named pip".
                await caller.reporter.progress(
                    "the project's .venv has no working pip (an install was cut off): rebuilding it"
                )
                created = await run(
                    proj,
                    caller,
                    [sys.executable, "-m", "venv", "--clear", str(proj.venv)],
                    timeout_s=settings.install_timeout_s,
                )
                _check(created, "rebuilding .venv")
                rebuilt = True
            argv = [str(python), "-m", "pip", "install", *(str(s) for s in pip_specs)]
            result = await run(proj, caller, argv, timeout_s=settings.install_timeout_s)
            _check(result, "pip install")
            await writer.edit_text(
                "requirements.txt", lambda current: _merge_requirements(current, pip_specs)
            )
            recorded = "requirements.txt"
        _check(result, f"{chosen} install")
        reply = {
            "manager": chosen,
            "packages": packages,
            "recorded_in": recorded,
            **command_result(result),
        }
        if chosen == "pip" and rebuilt:
            reply["note"] = (
                ".venv was broken and has been rebuilt: only these packages are in it now; "
                "install the rest of requirements.txt again"
            )
        return reply


def _secrets_of(proj: ToolProject) -> dict[str, str]:
    # project_environment recomputes PATH/VIRTUAL_ENV (a venv may have appeared since the
    # project was opened); the rest of proj.env is the secrets and DATABASE_URL.
    return {k: v for k, v in proj.env.items() if k not in ("PATH", "VIRTUAL_ENV")}


def _ok(result: CommandResult) -> bool:
    return result.exit_code == 0 and not result.timed_out


def _check(result: CommandResult, what: str) -> None:
    if _ok(result):
        return
    tail = result.output[-FAILURE_TAIL_CHARS:]
    reason = "timed out" if result.timed_out else f"failed with exit code {result.exit_code}"
    msg = f"{what} {reason}:\n{tail}"
    raise InvalidInput(msg)
