"""Checkpoints of a project's workspace after agent steps, undo of a run, restore (issue 19)."""

from .manager import CheckpointManager
from .store import CheckpointRecord, CheckpointStore

__all__ = ["CheckpointManager", "CheckpointRecord", "CheckpointStore"]
