"""A project's approval policy: which tool calls run, wait for a person, or are refused.

A policy is an ordered list of rules ``{"tool", "match"?, "action"}``; the first rule whose
tool and match fit a call decides, and a call no rule fits runs (``allow``), as before
policies existed. ``tool`` is a tool name or a glob (``*``, ``write_*``); ``match`` is a glob
on what the call is about (:func:`call_subjects`: a command, a path, the packages), with
``|`` between alternatives (``curl *|wget *``); without it the rule fits every call of the
tool. Actions: ``allow``, ``ask`` (an agent run waits for a person's decision; a client with
nobody to ask is refused) and ``deny``.

A command matches when the whole command or any of its simple commands does (split at ``;``,
``&&``, ``||``, ``|`` and newlines), so ``cd x && curl …`` is asked about like ``curl …``.
This makes rules useful, not airtight: a determined command can hide a program (``sh -c``,
variables); what a command can reach is the sandbox's business (``sandbox/``).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ..audit.log import record_audit
from ..db import Database
from ..db.models import ApprovalPolicy, Role, utcnow
from ..exceptions import InvalidInput
from ..identity import EcodeUser
from .manager import ProjectManager

ALLOW = "allow"
ASK = "ask"
DENY = "deny"
ACTIONS = (ALLOW, ASK, DENY)
MAX_RULES = 200
MAX_PATTERN_CHARS = 500
_TOOL_PATTERN = re.compile(r"^[A-Za-z0-9_*?\[\]-]{1,64}$")
# Where a shell command list splits into simple commands (see the module docstring).
_COMMAND_SPLIT = re.compile(r"\|\||&&|[;|\n]")


@dataclass(frozen=True)
class Rule:
    tool: str
    action: str
    match: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"tool": self.tool, "action": self.action}
        if self.match is not None:
            body["match"] = self.match
        return body

    def fits(self, tool: str, subjects: list[str]) -> bool:
        if not fnmatch.fnmatchcase(tool, self.tool):
            return False
        if self.match is None:
            return True
        patterns = [p.strip() for p in self.match.split("|") if p.strip()]
        return any(fnmatch.fnmatchcase(s, p) for s in subjects for p in patterns)


def parse_rules(body: Any) -> list[Rule]:
    """The rules of a ``PUT policy`` body (``{"rules": [...]}``); InvalidInput says what is
    wrong and where."""
    if not isinstance(body, dict) or set(body) != {"rules"}:
        msg = 'the policy is {"rules": [{"tool": ..., "match": ..., "action": ...}, ...]}'
        raise InvalidInput(msg, field="rules")
    raw = body["rules"]
    if not isinstance(raw, list):
        msg = "rules must be a list"
        raise InvalidInput(msg, field="rules")
    if len(raw) > MAX_RULES:
        msg = f"at most {MAX_RULES} rules"
        raise InvalidInput(msg, field="rules")
    return [_parse_rule(item, i) for i, item in enumerate(raw)]


def _parse_rule(item: Any, index: int) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(item, dict):
        msg = f"{where} must be an object"
        raise InvalidInput(msg, field=where)
    unknown = set(item) - {"tool", "match", "action"}
    if unknown:
        msg = f"{where}: unknown fields: {', '.join(sorted(unknown))}"
        raise InvalidInput(msg, field=where)
    tool = item.get("tool")
    if not isinstance(tool, str) or not _TOOL_PATTERN.fullmatch(tool):
        msg = f"{where}.tool must be a tool name or a glob such as write_* (letters, digits, _-*?)"
        raise InvalidInput(msg, field=f"{where}.tool")
    action = item.get("action")
    if action not in ACTIONS:
        msg = f"{where}.action must be one of {', '.join(ACTIONS)}"
        raise InvalidInput(msg, field=f"{where}.action")
    match = item.get("match")
    if match is not None and (
        not isinstance(match, str) or not match.strip() or len(match) > MAX_PATTERN_CHARS
    ):
        msg = f"{where}.match must be a non-empty glob of at most {MAX_PATTERN_CHARS} characters"
        raise InvalidInput(msg, field=f"{where}.match")
    return Rule(tool=tool, action=str(action), match=match)


def rules_from_json(raw: Any) -> list[Rule]:
    """Rules as stored (validated when they were written); anything unreadable is skipped."""
    rules = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and item.get("action") in ACTIONS:
            match = item.get("match")
            rules.append(
                Rule(
                    str(item.get("tool")),
                    str(item["action"]),
                    match if isinstance(match, str) else None,
                )
            )
    return rules


def call_subjects(tool: str, arguments: dict[str, Any]) -> list[str]:
    """What a rule's ``match`` is matched against for one call."""
    if tool == "run_command" or tool == "start_preview":
        command = str(arguments.get("command") or "")
        parts = [p.strip() for p in _COMMAND_SPLIT.split(command) if p.strip()]
        return [command.strip(), *parts]
    if tool == "install_packages":
        packages = arguments.get("packages")
        names = [str(p) for p in packages] if isinstance(packages, list) else [str(packages)]
        return [" ".join(names), *names]
    if "path" in arguments:
        return [str(arguments["path"])]
    if tool == "execute_code":
        return [str(arguments.get("code") or "")]
    if tool == "query_database":
        return [str(arguments.get("sql") or arguments.get("query") or "")]
    return []


def decide(rules: list[Rule], tool: str, arguments: dict[str, Any]) -> tuple[str, Rule | None]:
    """The action for a call, and the rule that chose it (None: no rule fits, allowed)."""
    subjects = call_subjects(tool, arguments)
    for rule in rules:
        if rule.fits(tool, subjects):
            return rule.action, rule
    return ALLOW, None


def allow_rule_for(tool: str, arguments: dict[str, Any]) -> Rule:
    """The rule "always allow" adds: this tool with exactly this subject (a command, a path),
    or the whole tool when a call has no subject."""
    subjects = call_subjects(tool, arguments)
    if not subjects:
        return Rule(tool=tool, action=ALLOW)
    # fnmatch would read *, ? and [ in the subject as patterns, and | splits alternatives.
    subject = re.sub(r"([*?\[])", r"[\1]", subjects[0]).replace("|", "?")
    if len(subject) > MAX_PATTERN_CHARS:
        # Too long to keep whole: its beginning, never the whole tool (which "always" on one
        # long command would otherwise allow). Cut before a partly kept [x] escape.
        head = subject[: MAX_PATTERN_CHARS - 4]
        subject = head[: head.rfind("[")] if head.count("[") > head.count("]") else head
        subject += "*"
    return Rule(tool=tool, action=ALLOW, match=subject or None)


class PolicyManager:
    """Reads and writes projects' approval policies. Called by the policy handler, the tool
    layer (on every call) and approvals ("always" adds a rule)."""

    def __init__(self, db: Database, projects: ProjectManager) -> None:
        self.db = db
        self.projects = projects
        #: an admin's rules before every project's own (a ceiling they cannot override) and
        #: after them (defaults); c.EcodeApp.approval_admin_rules / approval_default_rules
        self.admin_rules: list[Rule] = []
        self.default_rules: list[Rule] = []

    def configure(self, admin: Any, defaults: Any) -> None:
        """Set the admin's rules (raises InvalidInput, naming the rule, on a bad one)."""
        self.admin_rules = parse_rules({"rules": list(admin or [])})
        self.default_rules = parse_rules({"rules": list(defaults or [])})

    async def get_policy(self, user: EcodeUser, project_id: Any) -> dict[str, Any]:
        """The project's rules; members who may change things (editors and up) read them."""
        project = await self.projects.project_context(user, project_id, Role.editor)
        return await self.db.run(lambda s: self._to_json(s, project.id))

    async def set_policy(self, user: EcodeUser, project_id: Any, body: Any) -> dict[str, Any]:
        """Replace the project's rules (its owner, or an admin who is a member). Audited."""
        need = Role.viewer if user.is_admin else Role.owner
        project = await self.projects.project_context(user, project_id, need)
        rules = parse_rules(body)

        def write(session: Session) -> dict[str, Any]:
            self._store(session, project.id, [r.to_json() for r in rules], user.username)
            record_audit(
                session,
                actor=user.username,
                action="policy.update",
                target_type="project",
                target_id=project.id,
                project_id=project.id,
                remote_ip=user.remote_ip,
                details={"rules": [r.to_json() for r in rules]},
            )
            return self._to_json(session, project.id)

        return await self.db.run(write)

    async def rules_for(self, project_id: str) -> list[Rule]:
        """The rules that decide a call on the project, in order: the admin's, the project's,
        the defaults. Without authorization (the tool layer checks the caller)."""
        own = await self.db.run(lambda s: self.rules_in(s, project_id))
        return [*self.admin_rules, *own, *self.default_rules]

    @staticmethod
    def rules_in(session: Session, project_id: str) -> list[Rule]:
        row = session.get(ApprovalPolicy, project_id) if isinstance(project_id, str) else None
        return rules_from_json(row.rules) if row is not None else []

    def add_rule_in(self, session: Session, project_id: str, rule: Rule, by: str) -> None:
        """Put ``rule`` first ("always allow"), so it wins over the ask rule that asked."""
        current = [r.to_json() for r in self.rules_in(session, project_id)]
        if rule.to_json() in current:
            return
        self._store(session, project_id, [rule.to_json(), *current][:MAX_RULES], by)

    @staticmethod
    def _store(session: Session, project_id: str, rules: list[dict[str, Any]], by: str) -> None:
        row = session.get(ApprovalPolicy, project_id)
        if row is None:
            row = ApprovalPolicy(project_id=project_id, rules=rules, updated_by=by)
            session.add(row)
        else:
            row.rules = rules
            row.updated_by = by
            row.updated_at = utcnow()
        session.flush()

    def _to_json(self, session: Session, project_id: str) -> dict[str, Any]:
        row = session.get(ApprovalPolicy, project_id)
        return {
            "project_id": project_id,
            "rules": [r.to_json() for r in rules_from_json(row.rules if row else [])],
            # The admin's, read-only here: they apply before and after the project's rules.
            "admin_rules": [r.to_json() for r in self.admin_rules],
            "default_rules": [r.to_json() for r in self.default_rules],
            "updated_at": row.updated_at.isoformat() if row else None,
            "updated_by": row.updated_by if row else None,
        }
