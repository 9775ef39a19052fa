"""Pytest fixtures for the loopback model servers.

``ecode_jupyter.pytest_plugin`` (or a ``conftest.py``) re-exports them::

    from ecode_jupyter.testing.fixtures import ecode_anthropic_loopback, ecode_openai_loopback

Each fixture is a factory: call it with a script (a list of turns or a responder) and get a
started server; every server it made is stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from .anthropic_server import AnthropicLoopback
from .openai_server import OpenAILoopback
from .scripts import Responder, ScriptedTurn

Script = Sequence[ScriptedTurn] | Responder


@pytest.fixture
def ecode_anthropic_loopback() -> Iterator[Callable[..., AnthropicLoopback]]:
    """Factory ``(script, **kwargs) -> AnthropicLoopback``, started, stopped after the test."""
    servers: list[AnthropicLoopback] = []

    def start(script: Script = (), **kwargs: Any) -> AnthropicLoopback:
        server = AnthropicLoopback(script, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def ecode_openai_loopback() -> Iterator[Callable[..., OpenAILoopback]]:
    """Factory ``(script, **kwargs) -> OpenAILoopback``, started, stopped after the test."""
    servers: list[OpenAILoopback] = []

    def start(script: Script = (), **kwargs: Any) -> OpenAILoopback:
        server = OpenAILoopback(script, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
