"""The agent: a prompt becomes a working project, with a live, persisted progress feed.

``AgentManager`` (``manager.py``) owns runs; ``AgentLoop`` (``loop.py``) drives one; the
feed is in ``events.py``; providers are in ``providers/``.
"""

from __future__ import annotations

from .manager import AgentManager, AgentSettings

__all__ = ["AgentManager", "AgentSettings"]
