"""What checkpoints cost an agent step, what an unchanged step stores, and how fast undo is.

    python benchmarks/bench_checkpoints.py [--steps 40]

In one run, in scratch folders:

- **A step on the Flask template** (its files, a ``.venv`` and ``__pycache__`` as a real
  project has): each step writes ``app.py`` through the workspace writer, as ``write_file``
  does (the baseline), with the two looks the agent takes around a step's tools: before them
  (nothing changed, so nothing is recorded) and after them. Goal: p50 <= 50 ms.
- **The same on a project with 2,000 files** (and 5,000 in ``node_modules``, which are not
  walked). Goal: p50 <= 200 ms.
- **Bytes stored by a step that changed nothing** (goal ~0: such a step is not a checkpoint;
  the start of a run that finds nothing new adds only its small record).
- **Undo of a five-file run**: five files changed in two steps, then reverted through the
  writer as ``POST runs/{id}/undo`` does (``CheckpointManager.revert_steps`` and the
  checkpoint after it; the REST call adds its authorization and audit queries, a few ms on
  SQLite), against
  writing those five files back by hand. Goal: <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from _common import pct

import ecode_jupyter
from ecode_jupyter.checkpoints import CheckpointManager
from ecode_jupyter.db.models import Role
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.projects.manager import ProjectContext
from ecode_jupyter.workspace.writer import WorkspaceWriter

FLASK = Path(ecode_jupyter.__file__).parent / "projects" / "templates" / "flask-api" / "files"


def flask_project(root: Path) -> Path:
    ws = root / "flask"
    shutil.copytree(FLASK, ws)
    # What an installed project also has, none of which a checkpoint walks into.
    for i in range(300):
        pkg = ws / ".venv" / "lib" / f"pkg{i // 30}"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / f"mod{i}.py").write_text("x = 1\n" * 50)
    (ws / "__pycache__").mkdir()
    (ws / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"\0" * 4096)
    return ws


def big_project(root: Path, files: int = 2000) -> Path:
    ws = root / "big"
    for i in range(files):
        folder = ws / "src" / f"pkg{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"module{i}.py").write_text(f"# module {i}\n" + "value = 1\n" * 150)
    for i in range(5000):
        folder = ws / "node_modules" / f"dep{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"index{i}.js").write_text("module.exports = 1;\n")
    (ws / "app.py").write_text("print('hello')\n")
    return ws


def project_context(pid: str, ws: Path) -> ProjectContext:
    return ProjectContext(pid, "bench", pid, pid, ws, Role.owner, None, None, None)


async def step_times(
    manager: CheckpointManager, pid: str, ws: Path, steps: int
) -> tuple[list[float], list[float], int]:
    """(write ms, checkpoint ms, new bytes per changed step) over ``steps`` agent steps."""
    writer = WorkspaceWriter(ws)
    await manager.take(pid, ws, kind="start", run_id="r1", step=0)
    writes: list[float] = []
    checkpoints: list[float] = []
    new_bytes: list[int] = []
    for step in range(1, steps + 1):
        looked = time.perf_counter()
        await manager.take(pid, ws, kind="pre", run_id="r1", step=step)
        started = time.perf_counter()
        await writer.write_text("app.py", f"print('hello')\n# step {step}\n")
        wrote = time.perf_counter()
        rec = await manager.take(
            pid, ws, kind="step", run_id="r1", step=step, tools=["write_file"], reported=["app.py"]
        )
        done = time.perf_counter()
        writes.append((wrote - started) * 1000)
        checkpoints.append((done - wrote + started - looked) * 1000)
        new_bytes.append(rec.new_bytes if rec else 0)
    return writes, checkpoints, int(pct(new_bytes, 0.5))


def report(label: str, writes: list[float], checkpoints: list[float], goal_ms: float) -> None:
    w50, c50 = pct(writes, 0.5), pct(checkpoints, 0.5)
    verdict = "ok" if c50 <= goal_ms else "OVER GOAL"
    print(
        f"{label:>22}: write_file p50 {w50:6.2f} ms | checkpoint p50 {c50:6.2f} ms "
        f"p90 {pct(checkpoints, 0.9):6.2f} ms (x{c50 / w50:.1f} the write; "
        f"goal <= {goal_ms:g} ms: {verdict})"
    )


async def unchanged_bytes(manager: CheckpointManager, pid: str, ws: Path) -> tuple[int, int]:
    """Bytes stored by a step that changed nothing, and by a run start that found nothing new."""
    store = manager.store(pid)
    before = store.stored_bytes()
    step = await manager.take(pid, ws, kind="step", run_id="r2", step=1, tools=["read_file"])
    after_step = store.stored_bytes()
    assert step is None
    await manager.take(pid, ws, kind="start", run_id="r3", step=0)
    return after_step - before, store.stored_bytes() - after_step


async def undo_five(manager: CheckpointManager, root: Path) -> tuple[float, float]:
    """(undo ms, baseline ms): a five-file run reverted, against writing the five back."""
    ws = root / "five"
    shutil.copytree(FLASK, ws)
    pid = "five"
    user = EcodeUser("bench", "bench", False)
    project = project_context(pid, ws)
    writer = WorkspaceWriter(ws)
    names = ["app.py", "store.py", "README.md", "notes.md", "tests/test_extra.py"]
    originals = {n: (ws / n).read_text() if (ws / n).exists() else None for n in names}
    await manager.take(pid, ws, kind="start", run_id="run5", step=0)
    for step, chunk in enumerate((names[:3], names[3:]), start=1):
        for name in chunk:
            await writer.write_text(name, (originals[name] or "") + f"# agent step {step}\n")
        await manager.take(
            pid, ws, kind="step", run_id="run5", step=step, tools=["write_file"], reported=chunk
        )
    store = manager.store(pid)
    records = [r for r in store.list() if r.run_id == "run5"]
    started = time.perf_counter()
    result = await manager.revert_steps(user, project, store, records)
    await manager.take(pid, ws, kind="undo", run_id="run5")
    undo_ms = (time.perf_counter() - started) * 1000
    assert sorted(result.restored) == sorted(names), result
    # Baseline: the five writes themselves (the least an undo can do).
    started = time.perf_counter()
    for name in names:
        if originals[name] is None:
            await writer.write_text(name, "x\n")
        else:
            await writer.write_text(name, originals[name] + "#\n")
    base_ms = (time.perf_counter() - started) * 1000
    return undo_ms, base_ms


async def main(steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manager = CheckpointManager(SimpleNamespace(extras={}), root / "checkpoints", keep=1000)
        flask = flask_project(root)
        writes, cps, flask_new = await step_times(manager, "flask", flask, steps)
        report("Flask template", writes, cps, 50.0)
        big = big_project(root)
        # The first checkpoint of a project hashes every file once (not a step's cost).
        started = time.perf_counter()
        await manager.take("big", big, kind="start", run_id="r0", step=0)
        first_ms = (time.perf_counter() - started) * 1000
        writes, cps, big_new = await step_times(manager, "big", big, steps)
        report("2,000 files", writes, cps, 200.0)
        print(f"{'':>22}  (first checkpoint of the 2,000-file project: {first_ms:.0f} ms)")
        print(
            f"{'bytes per changed step':>22}: Flask {flask_new} B, 2,000 files {big_new} B "
            "(the changed file and the manifest)"
        )
        step_b, start_b = await unchanged_bytes(manager, "flask", flask)
        verdict = "ok" if step_b == 0 else "OVER GOAL"
        print(
            f"{'unchanged step':>22}: {step_b} B stored (goal ~0: {verdict}); "
            f"a run start with nothing new: {start_b} B (its record)"
        )
        undo_ms, base_ms = await undo_five(manager, root)
        verdict = "ok" if undo_ms <= 1000 else "OVER GOAL"
        print(
            f"{'undo of 5 files':>22}: {undo_ms:6.1f} ms (writing them back by hand "
            f"{base_ms:.1f} ms, x{undo_ms / base_ms:.1f}; goal <= 1000 ms: {verdict})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    asyncio.run(main(parser.parse_args().steps))
