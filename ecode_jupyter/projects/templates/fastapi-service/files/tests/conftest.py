import pytest
from fastapi.testclient import TestClient

from main import create_app


@pytest.fixture
def client():
    # A fresh app per test means a fresh, empty repository.
    with TestClient(create_app()) as test_client:
        yield test_client
