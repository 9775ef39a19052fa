"""Scripted model conversations for agent tests, valid for either loopback server."""

from __future__ import annotations

from typing import Any

import pytest

from ecode_jupyter.testing import ScriptedToolCall, ScriptedTurn, text_turn, tool_turn

BUGGY_APP = """\
from flask import Flask, jsonify, request

app = Flask(__name__)
TODOS = []


@app.get("/todos")
def list_todos():
    return jsonify(TODOS)


@app.post("/todos")
def add_todo():
    todo = {"id": len(TODOS) + 1, "title": request.get_json()["title"]}
    TODOS.append(todo)
    return jsonify(todo), 200
"""

APP_TEST = """\
from app import TODOS, app


def test_add_then_list():
    TODOS.clear()
    client = app.test_client()
    created = client.post("/todos", json={"title": "milk"})
    assert created.status_code == 201
    assert client.get("/todos").get_json() == [{"id": 1, "title": "milk"}]
"""

PLAN = "Plan:\n1. Write the Flask app.\n2. Write a test.\n3. Run the tests and fix failures.\n"
TEST_COMMAND = "python -m pytest -q"


def flask_build_script() -> list[ScriptedTurn]:
    """Writes a Flask app with a bug, sees its test fail, fixes it, sees it pass."""
    return [
        ScriptedTurn(
            text=PLAN,
            tool_calls=[
                ScriptedToolCall("write_file", {"path": "app.py", "content": BUGGY_APP}),
                ScriptedToolCall("write_file", {"path": "tests/test_app.py", "content": APP_TEST}),
            ],
        ),
        tool_turn("run_command", {"command": TEST_COMMAND}),
        tool_turn(
            "edit_file",
            {
                "path": "app.py",
                "old_text": "return jsonify(todo), 200",
                "new_text": "return jsonify(todo), 201",
            },
            text="The test wants 201 Created; fixing the status code.",
        ),
        tool_turn("run_command", {"command": TEST_COMMAND}),
        text_turn("Built a Flask todo API (app.py) with a passing test."),
    ]


def use_loopback(provider: str, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the provider's SDK at a loopback server (a key, and the server as base URL)."""
    if provider == "anthropic":
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
