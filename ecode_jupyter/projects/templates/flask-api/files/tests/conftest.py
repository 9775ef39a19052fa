import pytest

from app import create_app


@pytest.fixture
def app(monkeypatch):
    # Tests always start from an empty in-memory store, whatever the shell has set.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()
