"""Pytest fixtures for ecode_jupyter and packages that build on it.

Use with ``pytest_plugins = ["pytest_jupyter.jupyter_server", "ecode_jupyter.pytest_plugin"]``
(in that order, so these fixtures override pytest-jupyter's ``jp_server_config``). It gives a
database per test (SQLite by default; PostgreSQL when
``ECODE_TEST_DATABASE_URL`` is set — one fresh database per session, emptied between tests), a
server with the extension enabled and unauthenticated access off, and several test users, each
with their own token (``ecode_token("alice")``).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from jupyter_server.auth import IdentityProvider
from jupyter_server.auth.identity import User
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .db import Database
from .db.metadata import metadata
from .db.schema import upgrade

TEST_USERS = ("alice", "bob", "carol", "dave", "admin")
TEST_TOKEN_PREFIX = "ecode-test-token-"
TEST_SECRETS_KEY = Fernet.generate_key().decode()


def ecode_token_for(username: str) -> str:
    return f"{TEST_TOKEN_PREFIX}{username}"


class EcodeTestIdentityProvider(IdentityProvider):
    """Several users on one server: ``Authorization: token ecode-test-token-<name>``.

    Stands in for JupyterHub's identity in tests; the server's own token still works too.
    """

    async def get_user(self, handler: Any) -> User | None:
        token = self.get_token(handler)
        if token and token.startswith(TEST_TOKEN_PREFIX):
            name = token[len(TEST_TOKEN_PREFIX) :]
            if name in TEST_USERS:
                # As jupyter_server does for token logins: no XSRF cookie needed.
                handler._token_authenticated = True
                return User(username=name, name=name, display_name=name.title())
            return None
        user = super().get_user(handler)
        if inspect.isawaitable(user):
            user = await user
        return user


# -- databases --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ecode_postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this session, upgraded to head, or None for SQLite."""
    base = os.environ.get("ECODE_TEST_DATABASE_URL")
    if not base:
        yield None
        return
    name = f"ecode_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def ecode_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file upgraded to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("ecode-db-template") / "template.sqlite"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    # Closing the last connection checkpoints the WAL into the file we copy.
    db.dispose()
    return path


@pytest.fixture
def ecode_database_url(
    ecode_postgres_url: str | None, ecode_sqlite_template: Path, tmp_path: Path
) -> Iterator[str]:
    """The database URL for one test: an empty, upgraded database."""
    if ecode_postgres_url is None:
        path = tmp_path / "ecode.sqlite"
        shutil.copy(ecode_sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    yield ecode_postgres_url
    engine = create_engine(ecode_postgres_url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def ecode_db(ecode_database_url: str) -> Iterator[Database]:
    db = Database(ecode_database_url)
    yield db
    db.dispose()


# -- server -----------------------------------------------------------------------------


@pytest.fixture
def ecode_workspace_root(tmp_path: Path) -> Path:
    root = tmp_path / "workspaces"
    root.mkdir()
    return root


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    """Override to add config for a test module, e.g. ``{"EcodeApp": {...}}``."""
    return {}


@pytest.fixture
def jp_server_config(
    ecode_database_url: str,
    ecode_workspace_root: Path,
    ecode_extra_config: dict[str, Any],
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ServerApp": {
            "jpserver_extensions": {"ecode_jupyter": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
            "identity_provider_class": EcodeTestIdentityProvider,
        },
        "EcodeApp": {
            "database_url": ecode_database_url,
            "workspace_root": str(ecode_workspace_root),
            "secrets_key": TEST_SECRETS_KEY,
            "admin_users": {"admin"},
        },
    }
    for section, values in ecode_extra_config.items():
        config.setdefault(section, {}).update(values)
    from traitlets.config import Config

    return Config(config)


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code"))
        return None


ApiCall = Callable[..., Awaitable[ApiResponse]]


@pytest.fixture
def ecode_api(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> ApiCall:
    """``await ecode_api("GET", "projects", user="alice", body={...})`` → ApiResponse.

    ``user=None`` sends no credentials; ``raw=b"..."`` sends a body as is.
    """

    async def call(
        method: str,
        path: str,
        *,
        user: str | None = "alice",
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/ecode/{path}"
        hdrs = dict(headers or {})
        if user is not None:
            hdrs["Authorization"] = f"token {ecode_token_for(user)}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        req = HTTPRequest(
            url,
            method=method,
            headers=hdrs,
            body=data,
            allow_nonstandard_methods=True,
            request_timeout=60,
        )
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        payload: Any = None
        if resp.body:
            try:
                payload = json.loads(resp.body)
            except ValueError:
                payload = resp.body.decode(errors="replace")
        return ApiResponse(resp.code, payload, dict(resp.headers))

    return call


@pytest.fixture
def ecode_app(jp_serverapp: Any) -> Any:
    """The running EcodeApp extension instance."""
    for ext in jp_serverapp.extension_manager.extension_apps.get("ecode_jupyter", []):
        return ext
    pytest.fail("ecode_jupyter extension did not load")


# Loopback servers speaking the Anthropic and OpenAI wire formats (see ecode_jupyter.testing).
from .testing.fixtures import ecode_anthropic_loopback, ecode_openai_loopback  # noqa: E402

__all__ = ["ecode_anthropic_loopback", "ecode_openai_loopback"]
