"""Loopback fixtures for the provider tests (to move into ecode_jupyter.pytest_plugin)."""

from ecode_jupyter.testing.fixtures import (  # noqa: F401 - fixtures used by name
    ecode_anthropic_loopback,
    ecode_openai_loopback,
)
