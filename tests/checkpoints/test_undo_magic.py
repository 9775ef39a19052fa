"""`%ecode undo` in a real ipykernel against a real server: the run's files go back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from magics.kernel import CellOutput, kernel_env

from ecode_jupyter.pytest_plugin import ecode_token_for

from .conftest import RunScript
from .test_undo import five_file_run


async def _cell(kc: Any, code: str) -> CellOutput:
    out = CellOutput()
    reply = await kc.execute_interactive(code, output_hook=out.hook, timeout=120)
    out.status = reply["content"]["status"]
    return out


async def test_percent_ecode_undo_puts_back_the_runs_files(
    ecode_api: Any,
    ecode_workspace_root: Path,
    run_script: RunScript,
    jp_http_port: int,
    jp_base_url: str,
    tmp_path: Path,
) -> None:
    created = await ecode_api("POST", "projects", body={"name": "w", "template": "python-script"})
    pid = created.body["id"]
    ws = ecode_workspace_root / pid
    original_main = (ws / "main.py").read_text()
    run = await run_script(pid, five_file_run())
    env = kernel_env(
        ECODE_SERVER_URL=f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
        ECODE_TOKEN=ecode_token_for("alice"),
    )
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        assert (await _cell(kc, "%load_ext ecode_jupyter")).status == "ok"
        undone = await _cell(kc, f"%ecode undo {run['id']}")
        assert undone.status == "ok", undone.everything()
        assert f"ecode: undid run {run['id']}" in undone.stdout
        assert "put back  main.py" in undone.stdout and "put back  notes.md" in undone.stdout
        again = await _cell(kc, f"%ecode undo {run['id']}")
        assert "nothing to put back" in again.stdout
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    assert (ws / "main.py").read_text() == original_main
    assert not (ws / "notes.md").exists()
