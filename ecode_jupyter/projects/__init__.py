"""Projects: ownership, slugs, members, workspaces, soft delete and purge."""

from .manager import ProjectManager

__all__ = ["ProjectManager"]
