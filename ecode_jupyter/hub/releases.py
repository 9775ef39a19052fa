"""Releases on a hub: made and served by the ecode service, so they outlive users' servers.

A user's server is culled when idle and stopped when its owner logs off; a live app must
keep answering. So on a hub the service itself runs live releases (in the same sandbox as
everywhere: bubblewrap, the service's database, keys and folders absent, only the release's
own folder writable) and serves them at ``/services/ecode/ecode/live/@owner/slug/``, public
ones without a hub login.

A release is a snapshot of the project's files, which live in the server that runs the
project's tools (its owner's, or the project's own). Before the snapshot, the service brings
them into a staging copy of its own (``{releases_dir}/staging/{project}``, the service's
``workspace_root``) from that server's ``/api/ecode/hub/workspaces/{id}/archive`` (a tar of
exactly what a snapshot takes). That server is its owner's to change, so the archive is
hostile input here: size-capped while it downloads, and unpacked with tarfile's ``data``
filter plus our own checks (regular files and folders only, no absolute or ``..`` names,
the snapshot's limits), into a fresh folder that replaces the staging copy only once whole.

Previews still belong to the project's server (they run the live workspace, reloading on
save); on the service, ``start_preview`` says so (not built yet on a hub).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO

import httpx2

from ..client.rest import error_from_response
from ..deploy.releases import SnapshotLimits
from ..exceptions import Conflict, InvalidInput
from ..projects.manager import ProjectContext
from .remote import ProjectPlacement

log = logging.getLogger(__name__)

# Above the snapshot's own limit, for the tar headers (512 bytes per member and padding).
_ARCHIVE_SLACK = 64 * 1024 * 1024
_DOWNLOAD_CHUNK = 256 * 1024


class HubReleaseSource:
    """Brings a project's files into the service's staging copy (see the module docstring)."""

    def __init__(
        self,
        placement: ProjectPlacement,
        staging_root: Path,
        *,
        limits: SnapshotLimits | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        self.placement = placement
        self.staging_root = staging_root
        self.limits = limits or SnapshotLimits()
        self.timeout_s = timeout_s

    async def __call__(self, project: ProjectContext) -> None:
        """Make ``project.workspace`` (under the staging root) a copy of the project's files."""
        server = await self.placement.server_for(
            project.id, project.owner, project.slug, project.template
        )
        self.staging_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.staging_root) as archive:
            await self._download(f"{server}api/ecode/hub/workspaces/{project.id}/archive", archive)
            await asyncio.to_thread(self._unpack, archive, project.workspace)

    async def _download(self, url: str, into: IO[bytes]) -> None:
        cap = self.limits.max_total_bytes + _ARCHIVE_SLACK
        headers = {"Authorization": f"token {self.placement.directory.link.token}"}
        received = 0
        async with (
            httpx2.AsyncClient(headers=headers, timeout=self.timeout_s) as http,
            http.stream("GET", url) as answer,
        ):
            if answer.status_code != 200:
                body = (await answer.aread())[:2000]
                refusal = error_from_response(answer.status_code, body, "the project's server")
                log.warning("workspace archive from %s: %s", url, refusal)
                msg = (
                    "the project's server could not hand over its files for the release "
                    f"({answer.status_code}): {refusal.message}"
                )
                raise Conflict(msg)
            async for chunk in answer.aiter_bytes(_DOWNLOAD_CHUNK):
                received += len(chunk)
                if received > cap:
                    msg = "the project's files are too large to release"
                    raise InvalidInput(msg)
                into.write(chunk)
        into.seek(0)

    def _unpack(self, archive: IO[bytes], workspace: Path) -> None:
        incoming = workspace.with_name(f".{workspace.name}.incoming")
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir(mode=0o700)
        try:
            with tarfile.open(fileobj=archive, mode="r:") as tar:
                members = _checked_members(tar, self.limits)
                # The "data" filter refuses what escapes the folder, links, devices and
                # setuid bits again, below our own checks.
                tar.extractall(incoming, members=members, filter="data")
            old = workspace.with_name(f".{workspace.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            # What the live app keeps (its .ecode: the project database, its home) is not in
            # a snapshot: it carries over from the copy the current release runs on.
            kept = workspace / ".ecode"
            if kept.is_dir() and not (incoming / ".ecode").exists():
                os.replace(kept, incoming / ".ecode")
            if workspace.exists():
                os.replace(workspace, old)
            os.replace(incoming, workspace)
            shutil.rmtree(old, ignore_errors=True)
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            msg = f"the project's files could not be read for the release: {exc}"
            raise InvalidInput(msg) from exc
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise


def _checked_members(tar: tarfile.TarFile, limits: SnapshotLimits) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts or not name.parts:
            msg = f"the project's server sent a path outside the project: {member.name!r}"
            raise InvalidInput(msg)
        if not (member.isfile() or member.isdir()):
            msg = f"the project's server sent something that is not a file: {member.name!r}"
            raise InvalidInput(msg)
        total += member.size
        if (
            len(members) >= limits.max_files
            or member.size > limits.max_file_bytes
            or total > limits.max_total_bytes
        ):
            msg = "the project's files are too large to release"
            raise InvalidInput(msg)
        members.append(member)
    return members
