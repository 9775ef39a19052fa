# JupyterHub with E-Code in every user's server (single machine; see README.md beside this file).
#   ECODE_SECRETS_KEY=… jupyterhub -f examples/jupyterhub/jupyterhub_config.py
# tests/hub/ runs this file as is, then moves it onto free loopback ports with a test
# authenticator and spawner.
import os

c = get_config()  # noqa: F821

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.Authenticator.allow_all = True  # replace with your authenticator's allow list
c.Authenticator.admin_users = {"admin"}  # hub admins are E-Code admins (audit, grants)
c.Spawner.default_url = "/lab"

# Every user's server must share the key, or each would make its own key file and could not
# read secrets another member stored.
secrets_key = os.environ.get("ECODE_SECRETS_KEY")
if not secrets_key:
    msg = (
        "Set ECODE_SECRETS_KEY (a Fernet key) before starting the hub: "
        'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )
    raise SystemExit(msg)

# Every user's server talks to the same database and workspace storage.
c.Spawner.environment = {
    "ECODE_DATABASE_URL": os.environ.get(
        "ECODE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/ecode"
    ),
    "ECODE_WORKSPACE_ROOT": os.environ.get("ECODE_WORKSPACE_ROOT", "/srv/ecode/workspaces"),
    "ECODE_SECRETS_KEY": secrets_key,
}
if os.geteuid() == 0:
    # The local spawners run servers as root only when told to.
    c.Spawner.args = ["--allow-root"]
