"""The Kubernetes example cannot run here (no cluster): what can be checked without one is.

Every YAML document parses; the Python the chart runs in the hub (``hub.extraConfig``)
compiles and, run against fake spawners, does what the one-machine example's hook does; and the
roles and scopes the overlay for project servers gives are the ones the one-machine example
gives (which ``tests/hub/`` runs for real).
"""

from __future__ import annotations

import ast
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "examples" / "kubernetes"
ONE_MACHINE = REPO / "examples" / "jupyterhub" / "jupyterhub_config.py"


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_every_kubernetes_file_parses(path: Path) -> None:
    assert _documents(path)


def _one_machine_scopes() -> dict[str, list[str]]:
    """The roles' scopes of the one-machine config (read from its source, not run)."""
    tree = ast.parse(ONE_MACHINE.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Attribute)
            and node.targets[0].attr == "load_roles"
        ):
            roles = ast.literal_eval(node.value)
            return {role["name"]: sorted(role["scopes"]) for role in roles}
    pytest.fail("no c.JupyterHub.load_roles in the one-machine example")


def test_the_project_server_overlay_gives_the_one_machine_roles() -> None:
    (overlay,) = _documents(K8S / "project-servers.yaml")
    roles = overlay["hub"]["loadRoles"]
    expected = _one_machine_scopes()
    assert sorted(roles["ecode-service"]["scopes"]) == expected["ecode-service"]
    assert sorted(roles["user"]["scopes"]) == expected["user"]
    assert "custom:ecode:write" in overlay["hub"]["config"]["JupyterHub"]["custom_scopes"]
    assert overlay["hub"]["config"]["JupyterHub"]["allow_named_servers"] is True
    # A volume per server, so per project; named servers culled too.
    assert "{servername}" in overlay["singleuser"]["storage"]["dynamic"]["pvcNameTemplate"]
    assert overlay["cull"]["named"] is True
    slugs = [p["slug"] for p in overlay["singleuser"]["profileList"]]
    assert slugs == ["standard", "gpu"]


class _Spawner:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.user_options = options
        self.environment: dict[str, str] = {}
        self.args: list[str] = []
        self.notebook_dir = ""


def test_the_overlays_hub_config_does_what_the_one_machine_hook_does() -> None:
    (overlay,) = _documents(K8S / "project-servers.yaml")
    source = overlay["hub"]["extraConfig"]["ecode-project-servers"]
    c = types.SimpleNamespace(Spawner=types.SimpleNamespace(), KubeSpawner=types.SimpleNamespace())
    exec(compile(source, "extraConfig", "exec"), {"c": c})  # noqa: S102 (the example's own code)
    hook, scopes = c.KubeSpawner.pre_spawn_hook, c.Spawner.server_token_scopes
    project = _Spawner("ecode-shop", {"ecode_project": "a" * 32})
    hook(project)
    assert project.environment["ECODE_PROJECT_ID"] == "a" * 32
    assert "--ServerApp.authorizer_class=ecode_jupyter.hub.auth.ProjectAuthorizer" in project.args
    # A project server's token cannot use the ecode service; a user's own server's can.
    assert "access:services!service=ecode" not in scopes(project)
    assert "access:services!service=ecode" in scopes(_Spawner("", {}))
    with pytest.raises(ValueError, match="ecode_project"):
        hook(_Spawner("ecode-x", {"ecode_project": "../../etc"}))
    own = _Spawner("", {})
    hook(own)  # a user's own server is left as it is
    assert own.args == [] and own.environment == {}
