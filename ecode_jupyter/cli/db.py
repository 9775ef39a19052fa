"""`jupyter ecode db upgrade|downgrade|current`."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.console import Console

from ..db import Database
from ..db.schema import backup_sqlite, current_revision, downgrade, head_revision, upgrade
from ..db.session import redact_url
from .config import load_app


def register(subs: Any) -> None:
    p = subs.add_parser("db", help="database schema: upgrade, downgrade, current")
    dsubs = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsubs.add_parser("upgrade", help="upgrade the schema (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_upgrade)
    down = dsubs.add_parser("downgrade", help="downgrade the schema to a revision")
    down.add_argument("revision")
    down.set_defaults(handler=_downgrade)
    cur = dsubs.add_parser("current", help="show the schema revision")
    cur.set_defaults(handler=_current)


def _open(args: argparse.Namespace) -> Database:
    return Database(load_app(args).database_url)


async def _upgrade(args: argparse.Namespace, console: Console) -> int:
    db = _open(args)
    try:
        before = current_revision(db.engine)
        if before == head_revision(db) and args.revision == "head":
            console.print(f"{redact_url(db.url)}: schema {before} is up to date")
            return 0
        if db.is_sqlite:
            backup = await asyncio.to_thread(backup_sqlite, db)
            if backup:
                console.print(f"backed up to {backup}")
        await asyncio.to_thread(upgrade, db, args.revision)
        after = current_revision(db.engine)
        console.print(
            f"{redact_url(db.url)}: schema {before or 'empty'} → {after} (head {head_revision(db)})"
        )
        return 0
    finally:
        db.dispose()


async def _downgrade(args: argparse.Namespace, console: Console) -> int:
    db = _open(args)
    try:
        await asyncio.to_thread(downgrade, db, args.revision)
        console.print(f"{redact_url(db.url)}: schema now {current_revision(db.engine)}")
        return 0
    finally:
        db.dispose()


async def _current(args: argparse.Namespace, console: Console) -> int:
    db = _open(args)
    try:
        cur, head = current_revision(db.engine), head_revision(db)
        state = "up to date" if cur == head else "needs `jupyter ecode db upgrade`"
        console.print(f"{redact_url(db.url)}: schema {cur or 'empty'} (head {head}) — {state}")
        return 0 if cur == head else 1
    finally:
        db.dispose()
