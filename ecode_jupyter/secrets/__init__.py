"""Project secrets: write-only over the API, encrypted at rest, handed to processes as env."""

from .manager import SecretsManager, load_or_create_key

__all__ = ["SecretsManager", "load_or_create_key"]
