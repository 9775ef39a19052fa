"""A hostile path corpus and the sandbox it is aimed at, shared by workspace and tool tests.

Layout made by :func:`make_sandbox` (``tmp`` is a fresh folder)::

    tmp/ws/proj/            the workspace under attack
    tmp/ws/proj2/secret.txt a sibling sharing the workspace's name as a string prefix
    tmp/outside/secret.txt  anything else on the machine

and, inside the workspace, symlinks pointing out in every way a model could plant or find.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sandbox:
    tmp: Path
    root: Path
    sibling: Path
    outside: Path

    def snapshot(self) -> dict[str, str]:
        """Hash of every file outside the workspace, to show nothing there changed."""
        seen: dict[str, str] = {}
        for base in (self.sibling, self.outside, self.tmp):
            for path in sorted(base.rglob("*")):
                if path.is_relative_to(self.root) or path.is_symlink() or not path.is_file():
                    continue
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return seen


def make_sandbox(tmp: Path) -> Sandbox:
    root = tmp / "ws" / "proj"
    root.mkdir(parents=True)
    (tmp / "ws" / "secret.txt").write_text("parent secret\n")
    return plant_sandbox(root, tmp / "outside")


def plant_sandbox(root: Path, outside: Path) -> Sandbox:
    """Surround an existing workspace ``root`` with targets and plant links in it."""
    sibling = root.parent / (root.name + "2")
    for folder in (root / "nested" / "deeper", sibling, outside):
        folder.mkdir(parents=True, exist_ok=True)
    (sibling / "secret.txt").write_text("sibling secret\n")
    (outside / "secret.txt").write_text("outside secret\n")
    (root / "inside.txt").write_text("inside\n")
    (root / "notebook.ipynb").write_text(
        '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'
    )
    os.symlink(outside, root / "link_out")
    os.symlink("/etc/passwd", root / "link_file")
    os.symlink(f"../{sibling.name}", root / "link_sibling")
    os.symlink("/", root / "link_root")
    os.symlink("../..", root / "nested" / "link_up")
    os.symlink(root / "chain2", root / "chain1")
    os.symlink(outside, root / "chain2")
    os.symlink(outside / "not-there-yet.txt", root / "dangling_out")
    os.symlink(outside / "secret.txt", root / "link_secret")
    os.symlink("inside.txt", root / "link_inside")
    return Sandbox(tmp=root.parent, root=root, sibling=sibling, outside=outside)


def hostile_paths(box: Sandbox) -> list[str]:
    """Paths every file tool must refuse (at least 30)."""
    return [
        "..",
        "../",
        "../secret.txt",
        f"../../{box.outside.name}/secret.txt",
        f"a/../../{box.outside.name}/secret.txt",
        f"./../{box.sibling.name}/secret.txt",
        f"../{box.sibling.name}/secret.txt",
        "nested/deeper/../../../secret.txt",
        f"new_dir/../../{box.outside.name}/new.txt",
        "/etc/passwd",
        "//etc/passwd",
        str(box.outside / "secret.txt"),
        str(box.root / "inside.txt"),
        "~/.bashrc",
        "~root/.ssh/id_rsa",
        "~",
        "C:\\Windows\\system32\\config",
        "c:/windows/win.ini",
        "C:secret.txt",
        "\\\\server\\share\\secret.txt",
        f"..\\..\\{box.outside.name}\\secret.txt",
        "a\\..\\..\\secret.txt",
        "inside.txt\x00.png",
        "\x00",
        "",
        "   ",
        "evil\nname.txt",
        "a" * 300,
        "a/" * 600 + "b",
        "link_out/secret.txt",
        "link_out/new_file.txt",
        "link_file",
        "link_sibling/secret.txt",
        "link_root/etc/passwd",
        f"nested/link_up/{box.outside.name}/secret.txt",
        "chain1/secret.txt",
        "dangling_out",
        "link_secret",
    ]


# Odd but legitimate: these stay inside and must work (or fail as plain "not found").
CONTAINED_ODDITIES = [
    "a/../inside.txt",
    "./inside.txt",
    "nested/./deeper/../../inside.txt",
    "%2e%2e/%2e%2e/etc/passwd",
    "...",
    "link_inside",
    "ünïcødé/名前.txt",
    "-rf",
]
