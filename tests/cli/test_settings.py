"""``jupyter ecode settings`` lists every c.EcodeApp setting (they are not in the server's
own --help-all)."""

from __future__ import annotations

import pytest

from ecode_jupyter.app import EcodeApp
from ecode_jupyter.cli import main


def test_settings_lists_every_configurable_trait(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    names = EcodeApp.class_trait_names(config=True)
    assert {"database_url", "preview_origin", "preview_port"} <= set(names)
    for name in names:
        assert f"--EcodeApp.{name}=" in out
    assert "Default: 0" in out.split("--EcodeApp.preview_port=")[1].split("--EcodeApp.")[0]
