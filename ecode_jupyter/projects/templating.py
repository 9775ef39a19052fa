"""Project templates: the starter projects a new project is built from.

Each template is a folder ``templates/<id>/`` shipped in the package: ``template.json``
describes it and ``files/`` holds the project exactly as it is copied, except that text files
may contain the placeholders ``{{project_name}}`` and ``{{slug}}``.

Placeholders are replaced in one pass (a name that itself contains ``{{slug}}`` stays literal).
In ``.py``, ``.json``, ``.ipynb``, ``.toml`` and JavaScript/TypeScript files the value is escaped
as the inside of a double-quoted JSON string, which is also valid inside a double-quoted Python,
TOML or JavaScript string; so in those files a placeholder may only appear inside double quotes
(in a notebook: in a markdown cell), and a project called ``Tom's "best" app`` still gives
files that parse.

``template.json`` fields::

    id            the folder name, lower-case words joined by "-"
    title         short human name ("Flask API")
    description   one or two sentences for the template picker
    names         words that name this kind of project outright ("flask"); see match_template
    keywords      words that hint at it ("todo", "api")
    requirements  pip requirement strings the project needs, tests included (a Node template
                  has none: its package.json lists them, and ``npm install`` installs them)
    run           command that starts the app with a {port} placeholder, or null when the
                  project is not a server
    test          command that runs the project's own tests, from the project folder
    preview       "http", "websocket-app" (an app that also needs WebSockets), or null
    entry         the main file, opened first
    health        path that answers 200 once a served app is up, or null

Commands start with ``python``; ``run_argv`` / ``test_argv`` put the interpreter of choice there.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from ecode_jupyter.exceptions import (
    Conflict,
    EcodeError,
    InvalidInput,
    NotFound,
    PathOutsideWorkspace,
)

log = logging.getLogger(__name__)

TEMPLATES_ROOT = Path(__file__).parent / "templates"
DEFAULT_TEMPLATE_ID = "python-script"

PreviewKind = Literal["http", "websocket-app"]
_PREVIEW_KINDS: frozenset[str] = frozenset({"http", "websocket-app"})

# On a score tie the more common choice wins, so "a REST API" gets Flask rather than FastAPI.
_TIE_ORDER = (
    "flask-api",
    "fastapi-service",
    "streamlit-dashboard",
    "data-notebook",
    "python-script",
    # Node templates win only when the prompt names their stack ("express", "react").
    "express-api",
    "react-dashboard",
)

_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_WORD = re.compile(r"^[a-z0-9]+$")
_PLACEHOLDER = re.compile(r"\{\{(project_name|slug)\}\}")
# JavaScript and TypeScript strings take JSON escapes too.
_ESCAPED_SUFFIXES = frozenset(
    {".py", ".json", ".ipynb", ".toml", ".js", ".cjs", ".mjs", ".ts", ".tsx", ".jsx"}
)
# Left behind when someone runs a template's tests in place; never part of a new project.
_SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".ruff_cache"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})

_FIELDS = {
    "id",
    "title",
    "description",
    "names",
    "keywords",
    "requirements",
    "run",
    "test",
    "preview",
    "entry",
    "health",
}


@dataclass(frozen=True)
class ProjectTemplate:
    """One template, as read from its ``template.json``; ``root`` is its folder."""

    id: str
    title: str
    description: str
    names: tuple[str, ...]
    keywords: tuple[str, ...]
    requirements: tuple[str, ...]
    run: str | None
    test: str
    preview: PreviewKind | None
    entry: str
    health: str | None
    root: Path

    @property
    def files_root(self) -> Path:
        return self.root / "files"

    def file_paths(self) -> list[str]:
        """Relative POSIX paths of the files a new project gets, sorted."""
        return [rel for rel, _ in _iter_files(self.files_root)]

    def run_argv(self, port: int, *, python: str = "python") -> list[str] | None:
        """The run command as an argv for ``port``, or None when the project is not served."""
        if self.run is None:
            return None
        return _argv(self.run.replace("{port}", str(port)), python)

    def test_argv(self, *, python: str = "python") -> list[str]:
        return _argv(self.test, python)

    def to_json(self) -> dict[str, Any]:
        """What the REST template list shows. ``serves``: whether a project of it is a web app
        with a preview; one that is not (a script, a notebook) is used by opening or running
        ``entry``, so a client offers that instead of "Start preview"."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "serves": self.run is not None,
            "entry": self.entry,
        }


@dataclass(frozen=True)
class TemplateMatch:
    """How well a prompt fits a template, with the words that counted, for explaining a pick."""

    template: ProjectTemplate
    matched_names: tuple[str, ...]
    matched_keywords: tuple[str, ...]

    @property
    def score(self) -> tuple[int, int]:
        # Compared as a tuple: one naming word outweighs any number of hints.
        return (len(self.matched_names), len(self.matched_keywords))

    def explain(self) -> str:
        if self.score == (0, 0):
            return f"no template matched the prompt, so the default {self.template.id!r}"
        words = [*self.matched_names, *self.matched_keywords]
        return f"{self.template.id!r} because the prompt mentions: {', '.join(words)}"


def _argv(command: str, python: str) -> list[str]:
    argv = shlex.split(command)
    if argv and argv[0] == "python":
        argv[0] = python
    return argv


def _iter_files(files_root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(files_root.rglob("*")):
        rel = path.relative_to(files_root)
        if any(part in _SKIPPED_DIRS for part in rel.parts) or path.suffix in _SKIPPED_SUFFIXES:
            continue
        if path.is_file():
            yield rel.as_posix(), path


def _bad(folder: Path, problem: str) -> EcodeError:
    # A broken template is a packaging bug, not the user's fault: an internal error.
    msg = f"template {folder.name!r} is broken: {problem}"
    return EcodeError(msg)


def _string(data: dict[str, Any], key: str, folder: Path, *, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(folder, f"{key} must be a non-empty string")
    return value


def _words(data: dict[str, Any], key: str, folder: Path) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(
        isinstance(word, str) and _WORD.match(word) for word in value
    ):
        raise _bad(folder, f"{key} must be a list of lower-case words")
    return tuple(value)


def load_template(folder: Path) -> ProjectTemplate:
    """Read and check one template folder."""
    try:
        data = json.loads((folder / "template.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad(folder, f"cannot read template.json: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad(folder, "template.json must hold an object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise _bad(folder, f"unknown fields {sorted(unknown)}")

    template_id = _string(data, "id", folder)
    if template_id != folder.name or not _ID.match(template_id):
        raise _bad(folder, "id must match the folder name and be lower-case words joined by -")
    requirements = data.get("requirements")
    if not isinstance(requirements, list) or not all(
        isinstance(req, str) and req.strip() for req in requirements
    ):
        raise _bad(folder, "requirements must be a list of pip requirement strings")
    preview = data.get("preview")
    if preview is not None and preview not in _PREVIEW_KINDS:
        raise _bad(folder, f"preview must be one of {sorted(_PREVIEW_KINDS)} or null")
    run = _string(data, "run", folder, optional=True)
    # A served template must say where it listens, and only served templates have a run command.
    if (preview is None) != (run is None) or (run is not None and "{port}" not in run):
        raise _bad(folder, "run must contain {port} when preview is set, and be null otherwise")

    template = ProjectTemplate(
        id=template_id,
        title=cast(str, _string(data, "title", folder)),
        description=cast(str, _string(data, "description", folder)),
        names=_words(data, "names", folder),
        keywords=_words(data, "keywords", folder),
        requirements=tuple(requirements),
        run=run,
        test=cast(str, _string(data, "test", folder)),
        preview=cast(PreviewKind | None, preview),
        entry=cast(str, _string(data, "entry", folder)),
        health=_string(data, "health", folder, optional=True),
        root=folder,
    )
    files = dict(_iter_files(template.files_root))
    if template.entry not in files:
        raise _bad(folder, f"entry {template.entry!r} is not in files/")
    for rel, path in files.items():
        # Templates are text only: the agent writes them through write_file, which takes text.
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(folder, f"{rel} is not UTF-8 text") from exc
    return template


@functools.cache
def _load_all(root: Path) -> tuple[ProjectTemplate, ...]:
    templates = tuple(
        load_template(folder)
        for folder in sorted(root.iterdir())
        if (folder / "template.json").is_file()
    )
    log.debug("loaded %d project templates from %s", len(templates), root)
    return templates


def list_templates() -> list[ProjectTemplate]:
    """Every shipped template, sorted by id (read once, then cached)."""
    return list(_load_all(TEMPLATES_ROOT))


def get_template(template_id: str) -> ProjectTemplate:
    for template in _load_all(TEMPLATES_ROOT):
        if template.id == template_id:
            return template
    known = ", ".join(t.id for t in _load_all(TEMPLATES_ROOT))
    msg = f"no template {template_id!r}; choose one of: {known}"
    raise NotFound(msg, template=template_id)


def _render_text(text: str, suffix: str, values: dict[str, str]) -> str:
    if suffix in _ESCAPED_SUFFIXES:
        # json.dumps gives \" \\ \n and \uXXXX escapes, valid in JSON, Python and TOML strings.
        values = {key: json.dumps(value, ensure_ascii=False)[1:-1] for key, value in values.items()}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def template_files(template: ProjectTemplate, *, project_name: str, slug: str) -> dict[str, str]:
    """Relative path -> rendered text of every file of the template, sorted by path."""
    if not project_name.strip() or not slug.strip():
        msg = "a project name and a slug are needed to render a template"
        raise InvalidInput(msg)
    values = {"project_name": project_name, "slug": slug}
    return {
        rel: _render_text(path.read_text(encoding="utf-8"), path.suffix, values)
        for rel, path in _iter_files(template.files_root)
    }


def render_template(
    template: ProjectTemplate, dest: Path, *, project_name: str, slug: str
) -> list[str]:
    """Write the template's files into ``dest``, creating it, and return the paths written.

    ``dest`` may already hold other files (a new workspace may have hidden folders), but no file
    of the template may exist there yet: on any clash nothing is written and Conflict is raised.
    """
    files = template_files(template, project_name=project_name, slug=slug)
    if dest.exists() and not dest.is_dir():
        msg = f"{dest.name} exists and is not a folder"
        raise Conflict(msg)
    base = dest.resolve()
    targets: dict[str, Path] = {}
    for rel in files:
        target = dest / rel
        # A symlinked folder inside dest must not carry a write outside it.
        if not target.resolve().is_relative_to(base):
            msg = f"{rel} would be written outside the project folder"
            raise PathOutsideWorkspace(msg)
        targets[rel] = target
    clashes = [rel for rel, target in targets.items() if target.exists() or target.is_symlink()]
    if clashes:
        msg = f"the project folder already has {', '.join(clashes[:5])}"
        raise Conflict(msg, paths=clashes)

    for rel, text in files.items():
        targets[rel].parent.mkdir(parents=True, exist_ok=True)
        # newline="" keeps the template's \n line ends on every platform.
        with targets[rel].open("x", encoding="utf-8", newline="") as handle:
            handle.write(text)
    log.info("rendered template %s into %s (%d files)", template.id, dest, len(files))
    return list(files)


def _words_of(prompt: str) -> set[str]:
    words = set(re.findall(r"[a-z0-9]+", prompt.lower()))
    # A cheap plural fold ("charts" -> "chart", "apis" -> "api"); no stemmer needed for this.
    plurals = {w for w in words if len(w) > 3 and w.endswith("s") and not w.endswith("ss")}
    return words | {w[:-1] for w in plurals}


def score_templates(prompt: str) -> list[TemplateMatch]:
    """Every template with the prompt's words it matched, best first."""
    words = _words_of(prompt)
    templates = _load_all(TEMPLATES_ROOT)
    matches = [
        TemplateMatch(
            template=t,
            matched_names=tuple(w for w in t.names if w in words),
            matched_keywords=tuple(w for w in t.keywords if w in words and w not in t.names),
        )
        for t in templates
    ]

    def rank(match: TemplateMatch) -> tuple[int, int, int]:
        tid = match.template.id
        order = _TIE_ORDER.index(tid) if tid in _TIE_ORDER else len(_TIE_ORDER)
        return (-match.score[0], -match.score[1], order)

    return sorted(matches, key=rank)


def best_match(prompt: str) -> TemplateMatch:
    """The best match, or the default template (with nothing matched) when no word counted."""
    best = score_templates(prompt)[0]
    if best.score == (0, 0):
        return TemplateMatch(get_template(DEFAULT_TEMPLATE_ID), (), ())
    return best


def match_template(prompt: str) -> ProjectTemplate:
    """The template that fits a prompt: most naming words, then most keywords, then _TIE_ORDER.

    "a Flask todo API with tests" -> flask-api; a prompt with no known word -> python-script.
    """
    return best_match(prompt).template
