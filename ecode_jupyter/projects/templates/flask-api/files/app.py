"""{{project_name}}: a todo REST API.

Start it with `python -m flask --app app run`; Flask finds `create_app` below.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from store import TodoStore, store_from_url

MAX_TITLE_LENGTH = 200


class ValidationError(ValueError):
    """A request body that does not describe a valid todo."""


def _validate(body: Any, *, partial: bool) -> dict[str, Any]:
    """Check a JSON body and return the clean fields; `partial` allows leaving fields out."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    unknown = set(body) - {"title", "done"}
    if unknown:
        raise ValidationError(f"unknown fields: {', '.join(sorted(unknown))}")
    clean: dict[str, Any] = {}
    if "title" in body or not partial:
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ValidationError("title must be a non-empty string")
        if len(title.strip()) > MAX_TITLE_LENGTH:
            raise ValidationError(f"title must be at most {MAX_TITLE_LENGTH} characters")
        clean["title"] = title.strip()
    if "done" in body:
        if not isinstance(body["done"], bool):
            raise ValidationError("done must be true or false")
        clean["done"] = body["done"]
    if partial and not clean:
        raise ValidationError("nothing to change: send title and/or done")
    return clean


def _json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise ValidationError("send a JSON body with Content-Type: application/json")
    return body


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["DATABASE_URL"] = os.environ.get("DATABASE_URL")
    app.config.update(config or {})
    store: TodoStore = store_from_url(app.config["DATABASE_URL"])
    app.extensions["todo_store"] = store

    @app.errorhandler(ValidationError)
    def bad_request(error: ValidationError):
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Every error is JSON, so API clients never have to parse an HTML page.
        return jsonify(error=error.description), error.code

    @app.get("/")
    def index():
        return jsonify(
            name="{{project_name}}",
            endpoints=[
                "GET /health",
                "GET /todos",
                "POST /todos",
                "GET /todos/<id>",
                "PATCH /todos/<id>",
                "DELETE /todos/<id>",
            ],
        )

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.get("/todos")
    def list_todos():
        done_arg = request.args.get("done")
        if done_arg not in (None, "true", "false"):
            raise ValidationError("done must be 'true' or 'false'")
        done = None if done_arg is None else done_arg == "true"
        return jsonify([todo.to_dict() for todo in store.list(done=done)])

    @app.post("/todos")
    def create_todo():
        fields = _validate(_json_body(), partial=False)
        todo = store.create(fields["title"], fields.get("done", False))
        response = jsonify(todo.to_dict())
        response.status_code = 201
        response.headers["Location"] = url_for("get_todo", todo_id=todo.id)
        return response

    @app.get("/todos/<int:todo_id>")
    def get_todo(todo_id: int):
        todo = store.get(todo_id)
        if todo is None:
            return jsonify(error=f"todo {todo_id} not found"), 404
        return jsonify(todo.to_dict())

    @app.patch("/todos/<int:todo_id>")
    def update_todo(todo_id: int):
        fields = _validate(_json_body(), partial=True)
        todo = store.update(todo_id, fields)
        if todo is None:
            return jsonify(error=f"todo {todo_id} not found"), 404
        return jsonify(todo.to_dict())

    @app.delete("/todos/<int:todo_id>")
    def delete_todo(todo_id: int):
        if not store.delete(todo_id):
            return jsonify(error=f"todo {todo_id} not found"), 404
        return "", 204

    return app
