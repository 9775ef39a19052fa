import pytest

from app import create_app


def test_index_and_health(client):
    assert client.get("/").status_code == 200
    assert "/todos" in " ".join(client.get("/").get_json()["endpoints"])
    assert client.get("/health").get_json() == {"status": "ok"}


def test_create_then_read(client):
    response = client.post("/todos", json={"title": "  Buy milk  "})
    assert response.status_code == 201
    todo = response.get_json()
    assert todo == {"id": 1, "title": "Buy milk", "done": False}
    assert response.headers["Location"].endswith("/todos/1")

    assert client.get("/todos/1").get_json() == todo
    assert client.get("/todos").get_json() == [todo]


def test_list_filters_by_done(client):
    client.post("/todos", json={"title": "open"})
    client.post("/todos", json={"title": "closed", "done": True})

    assert [t["title"] for t in client.get("/todos?done=true").get_json()] == ["closed"]
    assert [t["title"] for t in client.get("/todos?done=false").get_json()] == ["open"]
    assert client.get("/todos?done=maybe").status_code == 400


def test_update_changes_only_given_fields(client):
    client.post("/todos", json={"title": "write tests"})

    response = client.patch("/todos/1", json={"done": True})

    assert response.status_code == 200
    assert response.get_json() == {"id": 1, "title": "write tests", "done": True}


def test_delete_removes_the_todo(client):
    client.post("/todos", json={"title": "temporary"})

    assert client.delete("/todos/1").status_code == 204
    assert client.get("/todos/1").status_code == 404
    assert client.delete("/todos/1").status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "title must be a non-empty string"),
        ({"title": "   "}, "title must be a non-empty string"),
        ({"title": 42}, "title must be a non-empty string"),
        ({"title": "x" * 201}, "at most 200"),
        ({"title": "ok", "done": "yes"}, "done must be true or false"),
        ({"title": "ok", "owner": "me"}, "unknown fields: owner"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_invalid_bodies_are_rejected(client, body, message):
    response = client.post("/todos", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert client.get("/todos").get_json() == []


def test_body_must_be_json(client):
    response = client.post("/todos", data="title=milk")
    assert response.status_code == 400
    assert "JSON" in response.get_json()["error"]


def test_empty_patch_is_rejected(client):
    client.post("/todos", json={"title": "keep"})
    assert client.patch("/todos/1", json={}).status_code == 400


def test_errors_are_json(client):
    missing = client.get("/todos/99")
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "todo 99 not found"}

    not_allowed = client.put("/todos/1", json={"title": "x"})
    assert not_allowed.status_code == 405
    assert "error" in not_allowed.get_json()


def test_sqlite_store_keeps_todos_across_app_restarts(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'todos.db'}")
    first = create_app({"TESTING": True}).test_client()
    first.post("/todos", json={"title": "survive a restart"})
    first.patch("/todos/1", json={"done": True})

    second = create_app({"TESTING": True}).test_client()

    assert second.get("/todos").get_json() == [
        {"id": 1, "title": "survive a restart", "done": True}
    ]
    assert second.delete("/todos/1").status_code == 204
    assert second.get("/todos").get_json() == []


def test_unsupported_database_url_fails_clearly(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/todos")
    with pytest.raises(ValueError, match="sqlite:///"):
        create_app()
