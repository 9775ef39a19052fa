"""SecretsManager: Fernet-encrypted project secrets.

Values go in and never come back out over the API; the only reader is ``project_env``, which
kernels, commands and previews use to build a process environment. The key comes from
configuration, or from a key file created with mode 0600 on first use.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..audit.log import record_audit
from ..db import Database
from ..db.models import ProjectSecret, Role, utcnow
from ..exceptions import EcodeError, InvalidInput, NotFound
from ..identity import EcodeUser
from ..pages import decode_cursor, encode_cursor
from ..projects.manager import ProjectManager

log = logging.getLogger(__name__)

SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_SECRET_BYTES = 64 * 1024
MAX_SECRETS_PER_PROJECT = 200
# Names a secret may not shadow: they would change how the project's processes start.
PROTECTED_NAMES = frozenset(
    {"PATH", "HOME", "PYTHONPATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "DATABASE_URL", "VIRTUAL_ENV"}
)


def load_or_create_key(key_file: Path) -> bytes:
    """Read the Fernet key, creating it 0600 (never world-readable, even for a moment)."""
    try:
        data = key_file.read_bytes().strip()
    except FileNotFoundError:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Fernet.generate_key()
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another server process created it first: use theirs.
            return key_file.read_bytes().strip()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        log.info("created a new secrets key file at %s", key_file)
        return key
    mode = key_file.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("secrets key file %s is readable by others (mode %o)", key_file, mode)
    return data


def _fernet(keys: list[bytes]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError) as exc:
        msg = "the configured secrets key is not a valid Fernet key (32 url-safe base64 bytes)"
        raise EcodeError(msg) from exc


class SecretsManager:
    def __init__(self, db: Database, projects: ProjectManager, keys: list[bytes]) -> None:
        if not keys:
            msg = "at least one secrets key is needed"
            raise EcodeError(msg)
        self.db = db
        self.projects = projects
        # The first key encrypts; all keys decrypt, so keys can be rotated.
        self._fernet = _fernet(keys)

    @staticmethod
    def validate_name(name: Any) -> str:
        if not isinstance(name, str) or not SECRET_NAME_RE.fullmatch(name):
            msg = "secret names are 1-64 letters, digits and underscores, not starting with a digit"
            raise InvalidInput(msg, field="name")
        if name.upper() in PROTECTED_NAMES or name.upper().startswith(("JUPYTER", "ECODE_")):
            msg = f"{name} is reserved and cannot be a secret name"
            raise InvalidInput(msg, field="name")
        return name

    async def list_secrets(self, user: EcodeUser, project_id: Any) -> list[dict[str, Any]]:
        await self.projects.get_project(user, project_id, Role.viewer)

        def query(session: Session) -> list[dict[str, Any]]:
            rows = session.scalars(
                select(ProjectSecret)
                .where(ProjectSecret.project_id == project_id)
                .order_by(ProjectSecret.name)
            )
            return [
                {
                    "name": r.name,
                    "updated_at": r.updated_at.isoformat(),
                    "updated_by": r.updated_by,
                }
                for r in rows
            ]

        return await self.db.run(query)

    async def list_secrets_page(
        self, user: EcodeUser, project_id: Any, *, limit: int = 200, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``list_secrets`` (by name) and the next page's cursor (None after the
        last)."""
        after = decode_cursor(cursor, str) if cursor else None
        await self.projects.get_project(user, project_id, Role.viewer)

        def query(session: Session) -> tuple[list[dict[str, Any]], str | None]:
            stmt = select(ProjectSecret).where(ProjectSecret.project_id == project_id)
            if after is not None:
                stmt = stmt.where(ProjectSecret.name > after[0])
            rows = list(session.scalars(stmt.order_by(ProjectSecret.name).limit(limit + 1)))
            page, more = rows[:limit], len(rows) > limit
            items = [
                {"name": r.name, "updated_at": r.updated_at.isoformat(), "updated_by": r.updated_by}
                for r in page
            ]
            return items, encode_cursor(page[-1].name) if more and page else None

        return await self.db.run(query)

    async def put_secret(
        self, user: EcodeUser, project_id: Any, name: Any, value: Any
    ) -> dict[str, Any]:
        clean = self.validate_name(name)
        if not isinstance(value, str):
            msg = "value must be a string"
            raise InvalidInput(msg, field="value")
        raw = value.encode()
        if len(raw) > MAX_SECRET_BYTES or "\x00" in value:
            msg = f"value must be at most {MAX_SECRET_BYTES} bytes without NUL characters"
            raise InvalidInput(msg, field="value")
        await self.projects.get_project(user, project_id, Role.editor)
        token = self._fernet.encrypt(raw)

        def put(session: Session) -> dict[str, Any]:
            row = session.get(ProjectSecret, (project_id, clean))
            action = "secret.update"
            if row is None:
                count = session.scalar(
                    select(func.count())
                    .select_from(ProjectSecret)
                    .where(ProjectSecret.project_id == project_id)
                )
                if (count or 0) >= MAX_SECRETS_PER_PROJECT:
                    msg = f"a project holds at most {MAX_SECRETS_PER_PROJECT} secrets"
                    raise InvalidInput(msg)
                row = ProjectSecret(
                    project_id=project_id, name=clean, ciphertext=token, updated_by=user.username
                )
                session.add(row)
                action = "secret.create"
            else:
                row.ciphertext = token
                row.updated_at = utcnow()
                row.updated_by = user.username
            # The audit trail names the secret, never its value.
            record_audit(
                session,
                actor=user.username,
                action=action,
                target_type="secret",
                target_id=clean,
                project_id=project_id,
                remote_ip=user.remote_ip,
            )
            session.flush()
            return {
                "name": clean,
                "updated_at": row.updated_at.isoformat(),
                "updated_by": row.updated_by,
            }

        return await self.db.run(put)

    async def delete_secret(self, user: EcodeUser, project_id: Any, name: Any) -> None:
        clean = self.validate_name(name)
        await self.projects.get_project(user, project_id, Role.editor)

        def delete(session: Session) -> None:
            row = session.get(ProjectSecret, (project_id, clean))
            if row is None:
                msg = f"no secret named {clean}"
                raise NotFound(msg)
            session.delete(row)
            record_audit(
                session,
                actor=user.username,
                action="secret.delete",
                target_type="secret",
                target_id=clean,
                project_id=project_id,
                remote_ip=user.remote_ip,
            )

        await self.db.run(delete)

    async def project_env(self, project_id: str) -> dict[str, str]:
        """The project's secrets as environment variables, for kernels, commands and previews.

        Callers must already have authorized access to the project. Never log the result.
        """

        def query(session: Session) -> list[tuple[str, bytes]]:
            rows = session.execute(
                select(ProjectSecret.name, ProjectSecret.ciphertext).where(
                    ProjectSecret.project_id == project_id
                )
            )
            return [(n, c) for n, c in rows]

        env: dict[str, str] = {}
        for name, token in await self.db.run(query):
            try:
                env[name] = self._fernet.decrypt(token).decode()
            except InvalidToken:
                log.error(
                    "secret %s of project %s cannot be decrypted with the keys", name, project_id
                )
        return env


def key_from_config(value: str) -> list[bytes]:
    """Keys from a comma-separated config value (first encrypts, all decrypt)."""
    keys = [k.strip().encode() for k in value.split(",") if k.strip()]
    for k in keys:
        try:
            if len(base64.urlsafe_b64decode(k)) != 32:
                raise ValueError
        except ValueError as exc:
            msg = "ECODE_SECRETS_KEY must be Fernet keys (url-safe base64 of 32 bytes)"
            raise EcodeError(msg) from exc
    return keys
