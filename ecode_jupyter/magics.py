"""``%load_ext ecode_jupyter``: the ``%ecode`` / ``%%ecode`` magics.

``%ecode a Flask todo API with tests`` creates a project named from the prompt — every prompt
does, unless the user asks to change a project: ``--project REF`` (``.`` for the current one)
or, for every later prompt, ``%ecode use REF`` — then follows the run's progress feed and
renders it live in the cell output until the run ends; Ctrl-C (interrupt) asks the server to cancel
the run. ``%%ecode`` takes the prompt from the cell body. Other subcommands: ``projects``,
``use``, ``runs``, ``status``, ``watch``, ``cancel``, ``approve``, ``credits``, ``model``,
``connect``, ``help``.

The magics speak to the Jupyter server over its REST and WebSocket API (``client/``), found
from the kernel's environment or the running-server list (``client/discovery.py``).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from IPython import display as ipython_display
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .client.discovery import (
    ServerInfo,
    describe_running_servers,
    env_token,
    find_server,
    normalize_url,
)
from .client.feed import FeedLost, follow_events
from .client.progress import RunProgress, credits_text
from .client.render import run_html, run_text, summary_text, table_html, table_text
from .client.rest import ApiError, ClientError, EcodeClient, NotConnected

log = logging.getLogger(__name__)

# IPython's display() is untyped; this is its signature as the magics use it.
display: Callable[..., Any] = ipython_display.display

#: seconds to wait, after asking for a cancel, for the run's last event
CANCEL_WAIT_S = 15.0
#: the live display redraws at most this often for chatty events (text and output streaming)
REDRAW_INTERVAL_S = 0.2
_CHATTY_EVENTS = frozenset({"message.delta", "command.output"})
MAX_PROJECT_NAME_CHARS = 60

USAGE = """\
%ecode PROMPT                 start the agent on a new project named from the prompt (or,
                              after `%ecode use REF`, a new run in that project)
%%ecode [options]             the same, with the cell body as the prompt
  options (before the prompt): --new NAME (a new project), --project REF (a change to that
  project; `--project .` the current one),
  --model NAME, --template ID (with a new project), --detach (start and return),
  --mode plan (the plan waits for %ecode approve) or --mode ask (only answers, changes nothing);
  `%ecode -- PROMPT` makes a prompt that starts like a subcommand a prompt
%ecode projects               your projects (* marks the current one)
%ecode use REF                make a project current, and prompts changes to it (id, slug,
                              @owner/slug or "name")
%ecode runs [REF]             runs of the current (or given) project
%ecode status [RUN]           the current (or given) run: status, usage, cost
%ecode watch [RUN]            follow a run's progress again (e.g. after --detach)
%ecode cancel [RUN]           cancel the current (or given) run
%ecode undo [RUN]             put back the files the current (or given) run changed,
                              keeping edits made since (overlaps are shown, not lost)
%ecode approve [RUN] ID [deny|always]
                              answer the approval request ID of the current (or given) run:
%ecode credits                your credit balance
%ecode model [NAME|default]   show or set this session's default model
%ecode connect [URL [TOKEN]]  show or set the server (default: from the environment)
"""

# name → (least, most) argument count; a line that does not fit is a prompt instead.
SUBCOMMANDS: dict[str, tuple[int, int]] = {
    "help": (0, 0),
    "projects": (0, 0),
    "use": (1, 1),
    "runs": (0, 1),
    "status": (0, 1),
    "watch": (0, 1),
    "cancel": (0, 1),
    "undo": (0, 1),
    "approve": (1, 3),
    "credits": (0, 0),
    "model": (0, 1),
    "connect": (0, 2),
}
_VALUE_OPTIONS = frozenset({"new", "project", "model", "template", "mode"})
_FLAG_OPTIONS = frozenset({"detach"})
_VALUE = re.compile(r"""\s*(?:=\s*)?(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+))""")


class _AwaitingApproval(Exception):
    """The followed run waits for a person's answer (raised to stop following it)."""


@dataclass
class RunOptions:
    new: str | None = None
    project: str | None = None
    model: str | None = None
    template: str | None = None
    #: build (default), plan or ask: the server says what it accepts
    mode: str | None = None
    detach: bool = False


def parse_prompt_line(line: str) -> tuple[RunOptions, str]:
    """Leading ``--options`` of a prompt line, and the rest (the prompt, as typed)."""
    opts = RunOptions()
    rest = line.strip()
    while rest.startswith("--"):
        match = re.match(r"--([A-Za-z][\w-]*)?", rest)
        if match is None:  # unreachable: the prefix "--" always matches
            break
        name = match.group(1)
        rest = rest[match.end() :]
        if name is None:  # a bare "--" ends the options
            break
        if name in _FLAG_OPTIONS:
            setattr(opts, name, True)
        elif name in _VALUE_OPTIONS:
            value = _VALUE.match(rest)
            if value is None:
                msg = f"--{name} needs a value"
                raise UsageError(msg)
            text = next(v for v in value.groups() if v is not None)
            setattr(opts, name, text.replace('\\"', '"'))
            rest = rest[value.end() :]
        else:
            msg = f"unknown option --{name}\n\n{USAGE}"
            raise UsageError(msg)
        rest = rest.lstrip()
    return opts, rest.strip()


def subcommand_of(line: str) -> list[str] | None:
    """``[name, *args]`` when ``line`` is a subcommand, None when it is a prompt.

    A line is a subcommand when its first word is one and the argument count fits, so
    "%ecode status" is a subcommand and "%ecode status page for my shop" a prompt. Arguments
    may be quoted (``use "My App"``); a line starting with ``--`` is always a prompt.
    """
    try:
        words = shlex.split(line)
    except ValueError:  # an apostrophe in a prompt ("that's") is not a quote
        words = line.split()
    if not words or words[0] not in SUBCOMMANDS or line.lstrip().startswith("--"):
        return None
    least, most = SUBCOMMANDS[words[0]]
    return words if least <= len(words) - 1 <= most else None


def undo_text(run_id: str, result: dict[str, Any]) -> str:
    """What ``%ecode undo`` prints: each file put back or merged, and each conflict with
    its merge (conflict markers), so the person can finish it by hand."""
    lines = [f"ecode: undid run {run_id}"]
    lines += [f"  put back  {path}" for path in result.get("restored", [])]
    lines += [f"  merged    {path}  (your edits kept)" for path in result.get("merged", [])]
    for conflict in result.get("conflicts", []):
        lines.append(f"  conflict  {conflict['path']}: {conflict['reason']}")
        if conflict.get("merge"):
            lines.append(conflict["merge"].rstrip("\n"))
    if len(lines) == 1:
        lines.append("  nothing to put back: the files are already as they were")
    return "\n".join(lines)


def name_from_prompt(prompt: str) -> str:
    """A project name from the first line of a prompt, cut at a word boundary."""
    first = next((ln.strip() for ln in prompt.splitlines() if ln.strip()), "")
    text = re.sub(r"\s+", " ", first).strip(" \"'.,;:!?-")
    if len(text) > MAX_PROJECT_NAME_CHARS:
        text = text[:MAX_PROJECT_NAME_CHARS].rsplit(" ", 1)[0]
    text = "".join(ch for ch in text if ch.isprintable())
    return (text[:1].upper() + text[1:]) or "Untitled project"


def project_label(project: dict[str, Any] | None) -> str | None:
    if not project:
        return None
    return f"@{project.get('owner')}/{project.get('slug')}"


def _terminal_display(shell: Any) -> bool:
    # A kernel (ipykernel's shell has .kernel) has a frontend that can update a display in
    # place; plain terminal IPython gets line-by-line text instead.
    return getattr(shell, "kernel", None) is None


class RunView:
    """Draws one run's progress: a display updated in place, or text lines in a terminal."""

    def __init__(self, progress: RunProgress, label: str | None, *, text_only: bool) -> None:
        self.progress = progress
        self.label = label
        self.text_only = text_only
        self._handle: Any = None
        self._drawn_at = 0.0
        self._dirty = False
        self._text = ""  # the agent's words, printed whole in a terminal

    def _bundle(self) -> dict[str, str]:
        return {
            "text/plain": run_text(self.progress, self.label),
            "text/html": run_html(self.progress, self.label),
        }

    def show(self) -> None:
        if self.text_only:
            print(f"ecode: run {self.progress.run_id} started ({self.label or 'project'})")
            return
        self._handle = display(self._bundle(), raw=True, display_id=True)
        self._drawn_at = time.monotonic()

    def on_event(self, event: dict[str, Any]) -> None:
        self.progress.apply(event)
        if self.text_only:
            self._print_event(event)
            return
        now = time.monotonic()
        if event.get("type") in _CHATTY_EVENTS and now - self._drawn_at < REDRAW_INTERVAL_S:
            self._dirty = True
            return
        self.redraw()

    def flush(self) -> None:
        """Draw what a throttled event held back (called while the feed is quiet)."""
        if self._dirty:
            self.redraw()

    def redraw(self) -> None:
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)
            self._drawn_at = time.monotonic()
            self._dirty = False

    def note(self, text: str) -> None:
        print(f"ecode: {text}", file=sys.stderr)

    def finish(self) -> None:
        if self.text_only:
            self._flush_text()
        else:
            self.redraw()
        print(summary_text(self.progress, self.label))

    def _print_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        data = event.get("data") or {}
        p = self.progress
        if kind == "message.delta":
            # Streamed text prints once it is complete, not one fragment per line.
            self._text += str(data.get("text") or "")
            return
        # The agent's own words are printed whole here (the offline provider says itself
        # that it is not AI), so the card's notice line would only repeat them.
        self._flush_text()
        if kind == "step.started":
            print(f"▶ {p.steps[-1]}")
        elif kind == "tool.call" and p.tools:
            tool = p.tools[-1]
            print(f"  · {tool.name} {tool.brief}".rstrip())
        elif kind == "tool.result" and data.get("ok") is False:
            print(f"    ✗ {data.get('name')} failed (exit {data.get('exit_code')})")
        elif kind == "approval.requested":
            print(f"  waiting for approval: {p.approval}")

    def _flush_text(self) -> None:
        text = self._text.strip()
        self._text = ""
        if text:
            print("\n".join(f"  {line}" for line in text.splitlines()))


@magics_class
class EcodeMagics(Magics):
    """Session state: the server, the current project and run, and the default model."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.server: ServerInfo | None = None
        self.project: dict[str, Any] | None = None
        #: prompts go to the current project only after `%ecode use` chose it; a project a
        #: prompt created stays current for status and runs, but the next prompt is a new one
        self.prompts_change_project = False
        self.run_id: str | None = None
        self.model: str | None = None
        self._client: EcodeClient | None = None

    # -- entry point ----------------------------------------------------------------------

    @line_cell_magic
    def ecode(self, line: str, cell: str | None = None) -> None:
        """Build projects with the ecode agent. `%ecode help` lists the subcommands."""
        try:
            if cell is not None:
                opts, rest = parse_prompt_line(line)
                if rest:
                    msg = "%%ecode takes its prompt from the cell body; put only options on the"
                    msg += f" magic line (found {rest!r})"
                    raise UsageError(msg)
                self._prompt(cell.strip(), opts)
                return
            if not line.strip():
                print(USAGE)
                return
            words = subcommand_of(line)
            if words is not None:
                command: Callable[..., None] = getattr(self, f"_cmd_{words[0]}")
                command(*words[1:])
                return
            opts, prompt = parse_prompt_line(line)
            self._prompt(prompt, opts)
        except ClientError as exc:
            raise UsageError(_error_text(exc)) from None

    # -- connection -----------------------------------------------------------------------

    def client(self) -> EcodeClient:
        if self._client is None:
            server = self.server or find_server()
            if server is None:
                running = describe_running_servers()
                msg = "no Jupyter server with ecode was found for this kernel"
                if len(running) > 1:
                    msg += f" (several are running: {', '.join(running)})"
                raise NotConnected(msg)
            self.server = server
            self._client = EcodeClient(server)
        return self._client

    def _cmd_connect(self, url: str | None = None, token: str | None = None) -> None:
        if url is None:
            server = self.server or find_server()
            if server is None:
                print("not connected; `%ecode connect URL [TOKEN]` sets the server")
                return
            login = "with a token" if server.token else "without a token"
            print(f"server: {server.url} ({login}; from {server.source or 'connect'})")
            return
        server = ServerInfo(normalize_url(url), token or env_token(os.environ), "%ecode connect")
        if self._client is not None:
            self._client.close()
        self.server, self._client = server, EcodeClient(server)
        # A project of another server means nothing here.
        self.project = None
        self.prompts_change_project = False
        self.run_id = None
        projects = self.client().list_projects()
        print(f"connected to {server.url}: {len(projects)} project(s)")

    # -- projects -------------------------------------------------------------------------

    def _cmd_projects(self) -> None:
        projects = self.client().list_projects()
        if not projects:
            print("no projects yet: `%ecode PROMPT` creates one")
            return
        current = (self.project or {}).get("id")
        columns = ("", "name", "slug", "role", "template", "updated")
        rows = [
            (
                "*" if p["id"] == current else "",
                p["name"],
                f"@{p['owner']}/{p['slug']}",
                p.get("role") or "",
                p.get("template") or "",
                str(p.get("updated_at") or "")[:16].replace("T", " "),
            )
            for p in projects
        ]
        _show_table(columns, rows)

    def resolve_project(self, ref: str) -> dict[str, Any]:
        """A project from an id, a slug, ``@owner/slug`` or a name of one of mine."""
        client = self.client()
        if "/" in ref:
            owner, _, slug = ref.lstrip("@").partition("/")
            return client.project_by_slug(owner, slug)
        mine = client.list_projects()
        for key in ("id", "slug"):
            found = [p for p in mine if p.get(key) == ref]
            if found:
                return found[0]
        named = [p for p in mine if str(p.get("name", "")).lower() == ref.lower()]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            msg = f"{len(named)} projects are named {ref!r}; use the slug or id instead"
            raise UsageError(msg)
        try:
            return client.get_project(ref)  # another owner's project shared with me
        except ApiError as exc:
            if exc.status == 404:
                msg = f"no project {ref!r}: `%ecode projects` lists yours"
                raise UsageError(msg) from None
            raise

    def _cmd_use(self, ref: str) -> None:
        self.project = self.resolve_project(ref)
        self.prompts_change_project = True
        self.run_id = None
        print(
            f"using project {self.project['name']} ({project_label(self.project)}): "
            "prompts change it now"
        )

    def _current_project(self, ref: str | None = None) -> dict[str, Any]:
        if ref:
            return self.resolve_project(ref)
        if self.project is None:
            msg = "no current project: `%ecode use NAME` picks one, `%ecode PROMPT` creates one"
            raise UsageError(msg)
        return self.project

    # -- runs -----------------------------------------------------------------------------

    def _prompt(self, prompt: str, opts: RunOptions) -> None:
        if not prompt:
            msg = f"a prompt is needed\n\n{USAGE}"
            raise UsageError(msg)
        client = self.client()
        model = opts.model or self.model
        # A prompt is a new project unless the user asked to change one (issue 18: a second
        # prompt in a notebook built into the first project).
        changes = opts.project is not None or (
            self.prompts_change_project and self.project is not None
        )
        if opts.new or not changes:
            project = client.create_project(
                opts.new or name_from_prompt(prompt),
                prompt=prompt,
                model=model,
                template=opts.template,
                mode=opts.mode,
            )
            run = project.pop("run", None)
            self.project = project
            self.prompts_change_project = False
            if not run:
                msg = (
                    f"created project {project['name']} ({project_label(project)}), but the "
                    "server started no run: the ecode agent is not enabled on this server"
                )
                raise UsageError(msg)
        else:
            if opts.template:
                msg = "--template applies to a new project (--new NAME)"
                raise UsageError(msg)
            ref = None if opts.project == "." else opts.project
            project = self._current_project(ref)
            run = client.start_run(project["id"], prompt, model, opts.mode)
            self.project = project
        self.run_id = str(run["id"])
        if opts.detach:
            print(
                f"ecode: run {self.run_id} started in {project_label(self.project)}; "
                "`%ecode watch` follows it, `%ecode status` shows it"
            )
            return
        self.watch(run)

    def watch(self, run: dict[str, Any]) -> RunProgress:
        """Follow a run until it ends, drawing its progress; Ctrl-C cancels it."""
        client = self.client()
        progress = RunProgress(str(run["id"]))
        progress.update_from_run({k: run.get(k) for k in ("model", "provider", "prompt")})
        view = RunView(
            progress, project_label(self.project), text_only=_terminal_display(self.shell)
        )
        view.show()
        interrupted = False

        def tick() -> None:
            view.flush()
            # Waiting for a person: this cell would hold the kernel, so no other cell could
            # answer. Stop following (the run goes on waiting) and say how to answer.
            if progress.approval_id is not None:
                raise _AwaitingApproval

        try:
            follow_events(client.server, progress.run_id, view.on_event, tick=tick)
        except _AwaitingApproval:
            view.note(
                f"the run waits for your approval: `%ecode approve {progress.run_id} "
                f"{progress.approval_id}` (add deny to refuse), or answer in the JupyterLab "
                "sidebar; `%ecode watch` follows the run again"
            )
        except KeyboardInterrupt:
            interrupted = True
            self._cancel_and_wait(client, view)
        except FeedLost as exc:
            view.note(f"{exc}. {exc.hint}")
        try:
            progress.update_from_run(client.get_run(progress.run_id))
        except ClientError as exc:
            view.note(f"could not read the run's final state: {exc}")
        view.finish()
        if interrupted:
            # Re-raised so "Run All" stops here, as with any interrupted cell.
            raise KeyboardInterrupt
        return progress

    def _cancel_and_wait(self, client: EcodeClient, view: RunView) -> None:
        run_id = view.progress.run_id
        view.note(f"interrupted: asking the server to cancel run {run_id}")
        try:
            client.cancel_run(run_id)
        except ClientError as exc:
            view.note(f"cancel failed: {_error_text(exc)}")
            return
        try:
            follow_events(
                client.server,
                run_id,
                view.on_event,
                tick=view.flush,
                after=view.progress.last_seq,
                deadline=time.monotonic() + CANCEL_WAIT_S,
            )
        except KeyboardInterrupt:
            view.note("stopped waiting for the run to stop; `%ecode status` shows it")
        except ClientError as exc:
            view.note(f"{exc}")

    def _run_ref(self, ref: str | None) -> str:
        if ref:
            return ref
        if self.run_id:
            return self.run_id
        if self.project is not None:
            runs = self.client().list_runs(self.project["id"])
            if runs:
                return str(runs[0]["id"])
        msg = "no run yet in this session: `%ecode PROMPT` starts one, `%ecode runs` lists them"
        raise UsageError(msg)

    def _cmd_runs(self, ref: str | None = None) -> None:
        project = self._current_project(ref)
        runs = self.client().list_runs(project["id"])
        if not runs:
            print(f"no runs in {project_label(project)} yet")
            return
        columns = ("id", "status", "started", "model", "cost", "prompt")
        rows = [
            (
                r["id"],
                r.get("status") or "",
                str(r.get("created_at") or "")[:16].replace("T", " "),
                r.get("model") or "",
                credits_text(r.get("cost_micros")),
                _shorten(str(r.get("prompt") or ""), 50),
            )
            for r in runs
        ]
        _show_table(columns, rows)

    def _cmd_status(self, ref: str | None = None) -> None:
        run = self.client().get_run(self._run_ref(ref))
        progress = RunProgress(str(run["id"]))
        progress.update_from_run(run)
        lines = [
            f"run {run['id']}: {run.get('status')}"
            + (f" — {run['reason']}" if run.get("reason") else ""),
            f"prompt: {_shorten(str(run.get('prompt') or ''), 200)}",
            f"model: {run.get('model')} ({run.get('provider')})",
            f"steps: {run.get('steps', 0)} · {progress.headline()}",
        ]
        if run.get("started_at"):
            lines.append(f"started: {run['started_at']}  finished: {run.get('finished_at') or '-'}")
        if run.get("status") in ("queued", "running"):
            lines.append("`%ecode watch` follows it, `%ecode cancel` stops it")
        print("\n".join(lines))

    def _cmd_watch(self, ref: str | None = None) -> None:
        run = self.client().get_run(self._run_ref(ref))
        self.run_id = str(run["id"])
        if self.project is None or self.project.get("id") != run.get("project_id"):
            try:
                self.project = self.client().get_project(str(run["project_id"]))
            except ClientError:
                log.debug("project of run %s is not readable; showing the run alone", run["id"])
        self.watch(run)

    def _cmd_cancel(self, ref: str | None = None) -> None:
        run_id = self._run_ref(ref)
        run = self.client().cancel_run(run_id)
        print(f"ecode: asked to cancel run {run_id} (status: {run.get('status', 'cancelling')})")

    def _cmd_undo(self, ref: str | None = None) -> None:
        run_id = self._run_ref(ref)
        result = self.client().post(f"runs/{quote(run_id, safe='')}/undo")
        print(undo_text(run_id, result))

    def _cmd_approve(self, *words: str) -> None:
        # The decision may be written as the CLI's flags too (--deny, --always).
        decision = "allow"
        if words and words[-1].lstrip("-") in ("allow", "deny", "always"):
            decision, words = words[-1].lstrip("-"), words[:-1]
        if len(words) not in (1, 2):
            msg = "usage: %ecode approve [RUN] APPROVAL_ID [deny|always]"
            raise UsageError(msg)
        run_id = self._run_ref(words[0] if len(words) == 2 else None)
        path = f"runs/{quote(run_id, safe='')}/approvals/{quote(words[-1], safe='')}"
        answer = self.client().post(path, {"decision": decision})
        what = answer.get("tool") or answer.get("kind") or "the request"
        print(f"ecode: {answer.get('status', decision)}: {what} (run {run_id})")

    # -- account --------------------------------------------------------------------------

    def _cmd_credits(self) -> None:
        try:
            account = self.client().billing_account()
        except ApiError as exc:
            if exc.status == 404:
                print("billing is not enabled on this server: runs are not charged")
                return
            raise
        print(credits_report(account))

    def _cmd_model(self, name: str | None = None) -> None:
        if name is None:
            if self.model:
                print(f"default model for this session: {self.model}")
            else:
                print("no default model set: each project's (or the server's) model is used")
            return
        self.model = None if name.lower() in ("default", "none") else name
        print(f"default model: {self.model or 'the server default'}")

    def _cmd_help(self) -> None:
        print(USAGE)


def _amount(data: Any, name: str) -> str | None:
    """``data[name + "_micros"]`` as credits, or None when absent."""
    if isinstance(data, dict) and isinstance(data.get(f"{name}_micros"), int):
        return credits_text(data[f"{name}_micros"])
    return None


def credits_report(account: dict[str, Any]) -> str:
    """``GET billing/account`` as a few lines: what is available, allowance, spend, budgets."""
    lines = [
        f"credits of {account.get('user', 'you')}: {_amount(account, 'available') or '?'} "
        f"available (balance {_amount(account, 'balance') or '?'}, "
        f"reserved by running work {_amount(account, 'reserved') or '0 credits'})"
    ]
    allowance = account.get("allowance")
    if isinstance(allowance, dict) and _amount(allowance, "monthly"):
        renews = str(allowance.get("renews_at") or "")[:10]
        lines.append(
            f"monthly allowance: {_amount(allowance, 'monthly')}, "
            f"{_amount(allowance, 'left') or '?'} left" + (f", renews {renews}" if renews else "")
        )
    month = account.get("month")
    if isinstance(month, dict) and _amount(month, "spent"):
        lines.append(f"spent in {month.get('period', 'this month')}: {_amount(month, 'spent')}")
    budgets = account.get("budgets") if isinstance(account.get("budgets"), dict) else {}
    user_budget = budgets.get("user") if isinstance(budgets, dict) else None
    if isinstance(user_budget, dict) and _amount(user_budget, "limit"):
        lines.append(
            f"your budget: {_amount(user_budget, 'left') or '?'} left of "
            f"{_amount(user_budget, 'limit')} ({user_budget.get('period')})"
        )
    for budget in (budgets.get("projects") or []) if isinstance(budgets, dict) else []:
        if isinstance(budget, dict) and _amount(budget, "limit"):
            lines.append(
                f"budget of {budget.get('name') or budget.get('subject')}: "
                f"{_amount(budget, 'left') or '?'} left of {_amount(budget, 'limit')}"
            )
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _show_table(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    display(
        {"text/plain": table_text(columns, rows), "text/html": table_html(columns, rows)},
        raw=True,
    )


def _error_text(exc: ClientError) -> str:
    hint = exc.hint
    return f"{exc}\n{hint}" if hint else str(exc)


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(EcodeMagics)
