"""Agent tests: no model keys from the environment, and project commands on this Python.

Project commands run ``python`` from ``PATH``; putting this interpreter's folder first makes
that the test environment's Python (with Flask, pytest, FastAPI, ...), as an activated
virtual environment does in CI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MODEL_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)


@pytest.fixture(autouse=True)
def agent_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([bindir, os.environ.get("PATH", os.defpath)]))
    yield


@pytest.fixture
def agent_config() -> dict[str, Any]:
    """EcodeApp traits for a test module's server; override per module."""
    return {"agent_offline_installs": False, "agent_max_wall_time_s": 120.0}


@pytest.fixture
def ecode_extra_config(agent_config: dict[str, Any]) -> dict[str, Any]:
    return {"EcodeApp": dict(agent_config)}
