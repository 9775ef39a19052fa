"""Input rules for names, slugs and usernames: checked once, here, for REST, CLI and tools."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from ..db.models import Role
from ..exceptions import InvalidInput

MAX_NAME_CHARS = 100
MAX_DESCRIPTION_CHARS = 2_000
MAX_PROMPT_CHARS = 20_000
MAX_SLUG_CHARS = 48
MAX_USERNAME_CHARS = 255

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
# Names that would be unsafe or confusing as a folder or a URL segment on some system.
RESERVED_SLUGS = frozenset(
    {
        "con",
        "prn",
        "aux",
        "nul",
        "clock$",
        "api",
        "new",
        "static",
        "settings",
        "admin",
        "login",
        "logout",
        "by-slug",
        "apps",
        "lab",
        "tree",
        "hub",
        "user",
        "ecode",
    }
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)
USERNAME_RE = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,255}$")
VISIBILITIES = ("private", "members", "public")


def _text(value: Any, field: str, max_chars: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        msg = f"{field} must be a string"
        raise InvalidInput(msg, field=field)
    if len(value) > max_chars * 4:
        # Refuse huge input before normalising it.
        msg = f"{field} is too long (at most {max_chars} characters)"
        raise InvalidInput(msg, field=field)
    text = unicodedata.normalize("NFC", value).strip()
    if not text and not allow_empty:
        msg = f"{field} must not be empty"
        raise InvalidInput(msg, field=field)
    if len(text) > max_chars:
        msg = f"{field} is too long (at most {max_chars} characters)"
        raise InvalidInput(msg, field=field)
    return text


def validate_name(value: Any) -> str:
    name = _text(value, "name", MAX_NAME_CHARS)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        msg = "name must not contain control or invisible characters"
        raise InvalidInput(msg, field="name")
    return name


def validate_description(value: Any) -> str:
    return _text(value, "description", MAX_DESCRIPTION_CHARS, allow_empty=True)


def validate_prompt(value: Any) -> str:
    prompt = _text(value, "prompt", MAX_PROMPT_CHARS)
    if "\x00" in prompt:
        msg = "prompt must not contain NUL characters"
        raise InvalidInput(msg, field="prompt")
    return prompt


def validate_slug(value: Any) -> str:
    if not isinstance(value, str):
        msg = "slug must be a string"
        raise InvalidInput(msg, field="slug")
    if not SLUG_RE.fullmatch(value) or "--" in value:
        msg = (
            "slug must be 1-48 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
        raise InvalidInput(msg, field="slug")
    if value in RESERVED_SLUGS:
        msg = f"slug {value!r} is reserved"
        raise InvalidInput(msg, field="slug")
    return value


def slugify(name: str) -> str:
    """A URL-safe slug from a display name ("Flask Todo API!" → "flask-todo-api")."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)[:MAX_SLUG_CHARS].strip("-")
    if not slug or slug in RESERVED_SLUGS:
        slug = f"project-{slug}" if slug else "project"
    return slug


def validate_username(value: Any) -> str:
    if not isinstance(value, str) or not USERNAME_RE.fullmatch(value):
        msg = "user must be a username of 1-255 printable characters without slashes"
        raise InvalidInput(msg, field="user")
    return value


def validate_role(value: Any) -> Role:
    try:
        return Role(value)
    except ValueError:
        msg = "role must be one of owner, editor, viewer"
        raise InvalidInput(msg, field="role") from None


def validate_visibility(value: Any) -> str:
    if value not in VISIBILITIES:
        msg = "visibility must be one of private, members, public"
        raise InvalidInput(msg, field="visibility")
    return str(value)


def validate_model(value: Any) -> str:
    model = _text(value, "model", 128)
    if not re.fullmatch(r"[A-Za-z0-9._:/@-]+", model):
        msg = "model must be a model name such as claude-sonnet-4-5 or gpt-4.1"
        raise InvalidInput(msg, field="model")
    return model
