# JupyterHub with E-Code in every user's server (single machine; see README.md beside this file).
#   jupyterhub -f examples/jupyterhub/jupyterhub_config.py
import os

c = get_config()  # noqa: F821

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.Authenticator.allow_all = True  # replace with your authenticator's allow list
c.Authenticator.admin_users = {"admin"}  # hub admins are E-Code admins (audit, grants)
c.Spawner.default_url = "/lab"

# Every user's server talks to the same PostgreSQL and workspace storage.
c.Spawner.environment = {
    "ECODE_DATABASE_URL": os.environ.get(
        "ECODE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/ecode"
    ),
    "ECODE_WORKSPACE_ROOT": "/srv/ecode/workspaces",
    "ECODE_SECRETS_KEY": os.environ.get("ECODE_SECRETS_KEY", ""),
}
if os.geteuid() == 0:
    c.Spawner.args = ["--allow-root"]
