"""Which checks verification runs for a workspace, how their results read, and which prompts the
offline provider has no template for."""

from __future__ import annotations

import pytest

from ecode_jupyter.agent.providers.offline import foreign_stacks
from ecode_jupyter.agent.selection import offline_template
from ecode_jupyter.agent.verification import NPM_TEST, Check, judge, plan_checks
from ecode_jupyter.projects.templating import get_template

PACKAGE = '{"name": "x", "scripts": {"test": "node --test"}}'


def kinds(checks: list[Check]) -> list[str]:
    return [c.kind for c in checks]


def test_a_python_project_is_checked_with_pytest_even_without_tests() -> None:
    assert kinds(
        plan_checks(["app.py", "tests/test_app.py"], package_json=None, template=None)
    ) == ["pytest"]
    # No tests and nothing else: pytest still runs, and its "no tests" fails the run.
    assert kinds(plan_checks(["app.py"], package_json=None, template=None)) == ["pytest"]
    assert kinds(plan_checks([], package_json=None, template=None)) == ["pytest"]


def test_a_node_project_is_checked_with_npm_test_not_pytest() -> None:
    checks = plan_checks(["package.json", "index.js"], package_json=PACKAGE, template=None)
    assert [(c.kind, c.command, c.problem) for c in checks] == [("npm", NPM_TEST, None)]
    # Dependencies' files never count as the project's own.
    deps = ["package.json", "node_modules/x/test_x.py", "node_modules/y/a.ipynb"]
    assert kinds(plan_checks(deps, package_json=PACKAGE, template=None)) == ["npm"]
    # With Python tests beside it, both stacks are checked.
    both = plan_checks(["package.json", "test_api.py"], package_json=PACKAGE, template=None)
    assert kinds(both) == ["npm", "pytest"]


@pytest.mark.parametrize(
    "package_json",
    [
        '{"name": "x"}',
        '{"scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}',
        "{not json",
    ],
)
def test_a_package_without_a_real_test_script_fails_without_running(package_json: str) -> None:
    (check,) = plan_checks(["package.json"], package_json=package_json, template=None)
    assert check.kind == "npm" and check.problem is not None


def test_a_notebook_project_runs_its_notebooks() -> None:
    checks = plan_checks(["analysis.ipynb"], package_json=None, template=None)
    assert kinds(checks) == ["notebook"] and "analysis.ipynb" in checks[0].command
    # A notebook template: the notebook runs, and so do its tests.
    template = get_template("data-notebook")
    files = ["analysis.ipynb", "tests/test_notebook.py", "data/weather.csv"]
    assert kinds(plan_checks(files, package_json=None, template=template)) == [
        "notebook",
        "pytest",
    ]
    # A Python app that ships a notebook beside its code is a Python project.
    assert kinds(plan_checks(["app.py", "demo.ipynb"], package_json=None, template=None)) == [
        "pytest"
    ]


@pytest.mark.parametrize(
    ("kind", "code", "output", "passed", "note"),
    [
        ("pytest", 0, "3 passed in 0.1s", True, ""),
        ("pytest", 5, "no tests ran in 0.01s", False, "no tests were collected"),
        ("pytest", 0, "3 tests collected in 0.01s", False, "no test passed"),
        ("pytest", 0, "2 skipped in 0.01s", False, "no test passed"),
        ("pytest", 1, "1 failed, 2 passed", False, ""),
        ("npm", 0, "# tests 3\n# pass 3\n", True, ""),
        ("npm", 0, "ℹ tests 0\nℹ pass 0\n", False, "ran no tests"),
        ("npm", 1, "Missing script: test", False, ""),
        ("notebook", 0, "a.ipynb: 4 code cells ran top to bottom", True, ""),
        ("notebook", None, "", False, "did not run to its end"),
    ],
)
def test_results_are_judged_by_exit_code_and_what_ran(
    kind: str, code: int | None, output: str, passed: bool, note: str
) -> None:
    result = judge(Check(kind, "cmd"), code, output)  # type: ignore[arg-type]
    assert result.passed is passed
    assert note in result.note
    assert result.to_json()["exit_code"] == code


@pytest.mark.parametrize(
    ("prompt", "missing"),
    [
        ("train a PyTorch model on the GPU", ["PyTorch", "a GPU"]),
        ("a Vue todo app in Svelte", ["Vue", "Svelte"]),
        ("a Django site in Ruby", ["Django", "Ruby"]),
        # The Node templates are built on these: not foreign any more.
        ("a React todo app", []),
        ("an Express API in Node.js", []),
        ("a Next.js blog", ["Next.js"]),
        ("a Flask todo API with tests", []),
        ("hello world", []),
    ],
)
def test_stacks_no_template_is_built_on_are_named(prompt: str, missing: list[str]) -> None:
    assert foreign_stacks(prompt) == missing


def test_the_offline_provider_takes_no_template_for_a_foreign_stack() -> None:
    template, why = offline_template("a Vue todo app", None)
    assert template is None and "Vue" in why
    # A template named outright still wins, and the rest is said to be left out.
    template, why = offline_template("a Flask API with a Vue frontend", None)
    assert template is not None and template.id == "flask-api"
    assert "Vue is not part of it" in why
    template, _ = offline_template("a React todo app", None)
    assert template is not None and template.id == "react-dashboard"
    # The project's own template is always built.
    template, _ = offline_template("train a PyTorch model", "python-script")
    assert template is not None and template.id == "python-script"
