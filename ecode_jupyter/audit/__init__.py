"""The audit trail: who did what, when, and from where."""

from .log import AuditLog

__all__ = ["AuditLog"]
