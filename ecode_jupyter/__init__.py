"""ecode-jupyter: one prompt to a running project, inside JupyterLab and JupyterHub."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import EcodeApp

    return [{"module": "ecode_jupyter", "app": EcodeApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "ecode-jupyter"}]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext ecode_jupyter`: registers the %ecode magics (when the agent is installed)."""
    from .magics import load_ipython_extension as load

    load(ipython)
