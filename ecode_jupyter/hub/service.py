"""``python -m ecode_jupyter.hub.service``: the ecode JupyterHub service.

One trusted process per hub that holds everything shared: the database (and its
credentials), the secrets key, the model API keys, the ledger, the audit trail, the rate
limits and the agent loop. It serves the suite's REST contract at
``/services/ecode/api/ecode/...``, by running a Jupyter server with JupyterHub's single-user
extension (HubOAuth: tokens for API clients, the OAuth cookie for browsers) and the ecode
extension in ``hub_role="service"``, and nothing else:

- every other server extension (JupyterLab, collaboration, ...) is disabled, terminals are
  off, and :class:`~ecode_jupyter.hub.auth.ServiceAuthorizer` refuses every Jupyter API but
  ecode's (contents, kernels, sessions ...), so no user can reach this process's files or
  start code in it;
- tool calls go to the project owner's server (``hub/remote.py``);
- live releases run here, sandboxed, so they outlive users' servers (``hub/releases.py``).

Run by the hub as a managed service (``c.JupyterHub.services = [{"name": "ecode", "url": ...,
"command": ["python", "-m", "ecode_jupyter.hub.service"], ...}]``; see
``examples/jupyterhub/``) or on its own with the environment a hub gives an external service
(``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_URL``,
``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_CLIENT_ID``, ``JUPYTERHUB_OAUTH_CALLBACK_URL``).
Extra arguments go to the server (``--EcodeApp.database_url=...``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from jupyter_core.paths import jupyter_config_path, jupyter_data_dir
from jupyter_server.extension.config import ExtensionConfigManager

from . import SERVICE

# The extensions a service process runs; every other one found in the config is disabled.
SERVICE_EXTENSIONS = ("ecode_jupyter",)


def service_config(private_dir: Path) -> str:
    """The service's own server config (a Python config file's text)."""
    manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
    found = manager.get_jpserver_extensions()  # type: ignore[no-untyped-call]
    extensions = {name: False for name in found}
    extensions.update({name: True for name in SERVICE_EXTENSIONS})
    root = private_dir / "root"
    root.mkdir(mode=0o700, exist_ok=True)
    # `--config` replaces the server's own config files, so they are loaded here first (the
    # lowest priority first), and what makes this process a locked-down service comes after
    # them: an admin configures the service with jupyter_server_config.py as usual, but cannot
    # turn the lockdown off by accident.
    own = [
        str(Path(folder) / "jupyter_server_config.py")
        for folder in reversed(jupyter_config_path())
        if (Path(folder) / "jupyter_server_config.py").is_file()
    ]
    lines = [
        "c = get_config()  # noqa: F821",
        *(f"load_subconfig({path!r})  # noqa: F821" for path in own),
        f"c.ServerApp.jpserver_extensions = {extensions!r}",
        # Nothing of Jupyter's own but what ecode's handlers need: no terminals, an empty
        # private root, no browser, no kernels started by default.
        "c.ServerApp.terminals_enabled = False",
        f"c.ServerApp.root_dir = {str(root)!r}",
        "c.ServerApp.open_browser = False",
        f"c.EcodeApp.hub_role = {SERVICE!r}",
        # Where a release's files are brought before their snapshot (hub/releases.py): in
        # the service's own data folder, and the same path at every start (it is part of
        # the identity under which the service finds its live releases again).
        f"c.EcodeApp.workspace_root = {str(Path(jupyter_data_dir()) / 'ecode-staging')!r}",
    ]
    if os.geteuid() == 0:
        # A hub whose spawner switches users runs as root, and its services with it. Root is
        # safe here only because this process runs no kernel or terminal, and project code
        # only as live releases inside the sandbox (a user namespace without capabilities,
        # uid 1000 inside, the service's files absent).
        lines.append("c.ServerApp.allow_root = True")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from jupyterhub.singleuser.extension import main as singleuser_main

    args = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("JUPYTERHUB_SERVICE_URL"):
        print(
            "ecode service: run me as a JupyterHub service (JUPYTERHUB_SERVICE_URL is not set);"
            " see examples/jupyterhub/",
            file=sys.stderr,
        )
        raise SystemExit(2)
    private_dir = Path(tempfile.mkdtemp(prefix="ecode-service-"))
    config_file = private_dir / "ecode_service_config.py"
    config_file.write_text(service_config(private_dir))
    # Given on the command line: JupyterHub's extension lets the command line win over its
    # own choice of identity provider (config files would lose to it).
    server_args = [
        f"--config={config_file}",
        "--ServerApp.identity_provider_class=ecode_jupyter.hub.auth.ServiceIdentityProvider",
        "--ServerApp.authorizer_class=ecode_jupyter.hub.auth.ServiceAuthorizer",
    ]
    singleuser_main(argv=server_args + args)


if __name__ == "__main__":
    main()
