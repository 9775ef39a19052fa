"""The suite's own checks of a project: which to run, and how to read their results.

A run is ``completed`` only after these pass, whatever the model itself ran: a model's
``pytest --co`` or ``pytest --lf`` proves nothing, so the loop always runs the checks itself.
They are chosen from what the workspace holds, not from what the model says it built::

    package.json                 ─► CI=true npm test    (no "test" script: fails, not run)
    a notebook project           ─► every top-level notebook executed top to bottom
    Python tests, or neither     ─► python -m pytest -q (exit 5, "no tests", fails)

A notebook project is one built from a notebook template, or whose only Python files are
tests. Both stacks' checks run when both are there, and the first failure ends the round.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

from ..projects.templating import ProjectTemplate

log = logging.getLogger(__name__)

CheckKind = Literal["pytest", "npm", "notebook"]

# pytest's exit code when it collected no tests: a project without tests is not verified.
PYTEST_NO_TESTS = 5
DEFAULT_PYTEST = "python -m pytest -q"
# CI=true makes vitest and jest run once instead of watching files (which never ends).
NPM_TEST = "CI=true npm test"
# npm init's placeholder test script: it exits 1 on purpose; it is not a test suite.
_NPM_PLACEHOLDER = "no test specified"
#: notebooks executed at most in one check (each starts a kernel)
MAX_NOTEBOOKS = 5
# pytest -q's last line: "3 passed, 1 skipped in 0.12s"; an exit 0 without "passed" ran none.
_PYTEST_PASSED = re.compile(r"\b[1-9]\d* passed\b")
# node --test's (TAP) summary, "# tests 0" / "ℹ tests 0": a green run of nothing.
_NODE_NO_TESTS = re.compile(r"^(?:#|ℹ)?\s*tests 0\s*$", re.MULTILINE)
# Folders that hold tools' or dependencies' files, never the project's own checks.
_SKIPPED_PARTS = frozenset({"node_modules", ".venv", "venv", ".ipynb_checkpoints", "__pycache__"})

# Run with the project's own `python`; executes each notebook given, in its own folder, with
# a fresh kernel, without writing it back. Exit 3 when it cannot run notebooks at all.
_NOTEBOOK_SCRIPT = """\
import os, sys
os.environ.setdefault("MPLBACKEND", "Agg")
try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
except ImportError as exc:
    print("cannot execute notebooks: " + str(exc.name) + " is not installed in the project's "
          "environment (install nbclient, nbformat and ipykernel)")
    sys.exit(3)
failed = 0
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    cells = sum(1 for cell in nb.cells if cell.cell_type == "code")
    if not cells:
        failed += 1
        print(path + ": has no code cells to run")
        continue
    folder = os.path.dirname(os.path.abspath(path))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": folder}})
    try:
        client.execute()
    except CellExecutionError as exc:
        failed += 1
        print(path + ": a cell failed\\n" + str(exc))
    except Exception as exc:
        failed += 1
        print(path + ": could not run: " + type(exc).__name__ + ": " + str(exc))
    else:
        print(path + ": " + str(cells) + " code cells ran top to bottom")
sys.exit(1 if failed else 0)
"""


@dataclass(frozen=True)
class Check:
    """One check to run; ``problem`` fails it without running (e.g. no test script)."""

    kind: CheckKind
    command: str
    problem: str | None = None
    #: what the feed shows instead of ``command`` (the notebook runner is a whole script)
    label: str = ""

    @property
    def shown(self) -> str:
        return self.label or self.command


@dataclass
class VerifyResult:
    """The outcome of one check, as the feed and the run's summary show it."""

    command: str
    passed: bool
    exit_code: int | None
    output: str
    note: str = ""
    kind: str = "pytest"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "command": self.command,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "note": self.note,
            "output_tail": self.output[-1500:],
        }


def _own(path: str) -> bool:
    parts = path.split("/")
    return not any(part in _SKIPPED_PARTS or part.startswith(".") for part in parts)


def _is_python_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def notebook_command(paths: list[str]) -> str:
    """A shell command that executes ``paths`` top to bottom with the project's python."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return f"python -c {shlex.quote(_NOTEBOOK_SCRIPT)} {quoted}"


def npm_check(package_json: str | None) -> Check:
    """``npm test``, or a failing check when package.json has no real test script."""
    try:
        data = json.loads(package_json or "")
    except ValueError:
        return Check("npm", NPM_TEST, problem="package.json is not valid JSON")
    scripts = data.get("scripts") if isinstance(data, dict) else None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    if not isinstance(test, str) or not test.strip() or _NPM_PLACEHOLDER in test:
        problem = (
            'package.json has no "test" script: add one that runs the project\'s tests '
            "(for example vitest, jest or node --test)"
        )
        return Check("npm", NPM_TEST, problem=problem)
    return Check("npm", NPM_TEST)


def plan_checks(
    files: list[str],
    *,
    package_json: str | None,
    template: ProjectTemplate | None,
    pytest_command: str = DEFAULT_PYTEST,
) -> list[Check]:
    """The checks for a workspace holding ``files`` (relative paths)."""
    own = [f for f in files if _own(f)]
    node = "package.json" in own
    notebooks = sorted(f for f in own if f.endswith(".ipynb") and "/" not in f)
    py_tests = [f for f in own if _is_python_test(f)]
    py_code = [f for f in own if f.endswith(".py") and f not in py_tests]
    code_is_tests = all(f.rsplit("/", 1)[-1] == "conftest.py" for f in py_code)
    notebook_project = bool(notebooks) and (
        (template is not None and template.entry.endswith(".ipynb")) or (not node and code_is_tests)
    )
    checks: list[Check] = []
    if node:
        checks.append(npm_check(package_json))
    if notebook_project:
        chosen = notebooks[:MAX_NOTEBOOKS]
        label = "execute top to bottom: " + ", ".join(chosen)
        checks.append(Check("notebook", notebook_command(chosen), label=label))
    if py_tests or not checks:
        checks.append(Check("pytest", pytest_command))
    return checks


def judge(check: Check, exit_code: int | None, output: str) -> VerifyResult:
    """A check's result from its exit code and output: a green run of no tests is no pass."""

    def result(passed: bool, note: str = "") -> VerifyResult:
        return VerifyResult(check.shown, passed, exit_code, output, note=note, kind=check.kind)

    if exit_code is None:
        return result(False, "the check did not run to its end")
    if check.kind == "pytest":
        if exit_code == PYTEST_NO_TESTS:
            return result(False, "no tests were collected: the project has no tests")
        if exit_code == 0 and not _PYTEST_PASSED.search(output):
            return result(False, "no test passed (all were skipped, deselected or only collected)")
    if check.kind == "npm" and exit_code == 0 and _NODE_NO_TESTS.search(output):
        return result(False, "the test script ran no tests")
    if exit_code == 0:
        return result(True, "")
    return result(False)
