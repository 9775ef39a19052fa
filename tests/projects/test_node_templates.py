"""The Node templates without npm: metadata, placeholders that still parse, prompts that pick
them. Installing, testing and previewing them is tests/agent/test_node_templates_run.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ecode_jupyter.agent.providers.offline import foreign_stacks
from ecode_jupyter.deploy.detection import detect_run
from ecode_jupyter.projects.templating import get_template, match_template, render_template

NODE_TEMPLATES = ["express-api", "react-dashboard"]
AWKWARD_NAME = 'Zoë\'s "Tiny" App \\ v2'


@pytest.mark.parametrize("template_id", NODE_TEMPLATES)
def test_a_node_template_renders_files_that_parse(template_id: str, tmp_path: Path) -> None:
    template = get_template(template_id)
    render_template(template, tmp_path, project_name=AWKWARD_NAME, slug="zoe")
    package = json.loads((tmp_path / "package.json").read_text())
    assert package["name"] == "zoe" and AWKWARD_NAME in package["description"]
    assert package["scripts"]["test"] and "no test specified" not in package["scripts"]["test"]
    assert template.requirements == () and template.test == "npm test"
    assert (tmp_path / ".gitignore").read_text().startswith("node_modules/")
    node = shutil.which("node")
    if node is not None:
        for script in tmp_path.rglob("*.js"):
            # The awkward name lands in JavaScript strings escaped: the files still parse.
            subprocess.run([node, "--check", str(script)], check=True, capture_output=True)
    # The preview runs the template's command with the port, through npm.
    spec = detect_run(tmp_path, template_id=template_id)
    assert spec.source == "template" and spec.command.startswith("npm ")
    assert "{port}" in spec.command


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("an Express API", "express-api"),
        ("a Node.js todo API", "express-api"),
        ("a React dashboard", "react-dashboard"),
        ("a typescript dashboard with charts", "react-dashboard"),
        ("a REST API", "flask-api"),
        ("a sales dashboard", "streamlit-dashboard"),
    ],
)
def test_javascript_prompts_pick_the_node_templates(prompt: str, expected: str) -> None:
    assert match_template(prompt).id == expected
    assert foreign_stacks(prompt) == []


def test_stacks_without_a_template_are_still_named() -> None:
    assert foreign_stacks("a Next.js blog") == ["Next.js"]
    assert foreign_stacks("a Vue app") == ["Vue"]
    assert foreign_stacks("train a PyTorch model on the GPU") == ["PyTorch", "a GPU"]
