# JupyterHub with the ecode service (one machine; see README.md beside this file).
#   ECODE_SECRETS_KEY=… jupyterhub -f examples/jupyterhub/jupyterhub_config.py
#
# The trust boundary (docs/trust-boundary.md): every user fully controls their own server, so
# nothing shared goes there. One hub-managed service, `ecode`, holds the database, the secrets
# key, the model keys, the ledger, the audit trail and the agent; users' servers only forward
# the ecode API to it and run the tool calls it sends on their owner's own files.
#
# tests/hub/ runs this file as is, then moves it onto free loopback ports with a test
# authenticator and test folders.
import os
import sys

c = get_config()  # noqa: F821

public_url = os.environ.get("ECODE_HUB_PUBLIC_URL", "http://127.0.0.1:8000")
c.JupyterHub.bind_url = public_url
c.Authenticator.allow_all = True  # replace with your authenticator's allow list
c.Authenticator.admin_users = {"admin"}  # hub admins are ecode admins (audit, grants, usage)
c.Spawner.default_url = "/lab"

# -- the ecode service: only the hub's account can read what it holds ----------------------
# Its folder (SQLite database, release store) must be readable by the hub's account alone
# (mode 0700); with PostgreSQL, give ECODE_DATABASE_URL a role whose password only this file's
# environment knows (see README.md).
service_dir = os.environ.get("ECODE_SERVICE_DIR", "/srv/ecode")
service_port = int(os.environ.get("ECODE_SERVICE_PORT", "10101"))
service_url = f"http://127.0.0.1:{service_port}"

secrets_key = os.environ.get("ECODE_SECRETS_KEY")
if not secrets_key:
    msg = (
        "Set ECODE_SECRETS_KEY (a Fernet key) before starting the hub: "
        'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )
    raise SystemExit(msg)

service_env = {
    "ECODE_DATABASE_URL": os.environ.get(
        "ECODE_DATABASE_URL", f"sqlite:///{os.path.join(service_dir, 'ecode.sqlite')}"
    ),
    "ECODE_SECRETS_KEY": secrets_key,
    # Tool calls reach users' servers through the hub's proxy.
    "ECODE_HUB_USERS_URL": public_url,
    "JUPYTER_DATA_DIR": os.path.join(service_dir, "data"),
    "JUPYTER_RUNTIME_DIR": os.path.join(service_dir, "runtime"),
    "PATH": os.environ.get("PATH", os.defpath),
}
# Model keys live in the service only (with no key, the offline provider builds templates).
for name in (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ECODE_REDIS_URL",
):
    if os.environ.get(name):
        service_env[name] = os.environ[name]

c.JupyterHub.services = [
    {
        "name": "ecode",
        "url": service_url,
        "command": [sys.executable, "-m", "ecode_jupyter.hub.service"],
        "environment": service_env,
        # Users open the service's API through their own server; a browser that visits
        # /services/ecode/ directly logs in without a consent page.
        "oauth_no_confirm": True,
    }
]
c.JupyterHub.load_roles = [
    {
        # The service reads users (admin flag, groups, whether their server runs) and calls
        # the tools of users' servers; it may not start, stop or share them (part 2 will).
        "name": "ecode-service",
        "services": ["ecode"],
        "scopes": ["read:users", "read:groups", "read:servers", "access:servers"],
    },
    {
        # Every user may use the ecode service (their own projects only; roles are ecode's).
        "name": "user",
        "scopes": ["self", "access:services!service=ecode"],
    },
]
# A user's server (and its kernels and terminals, which inherit its environment) holds its
# owner's token only, scoped to what the owner may do anyway: open the ecode service.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=ecode",
]
# Where users' servers reach the service directly (not through the proxy). Nothing else of
# ecode goes into users' servers: they refuse to start if given the database URL or a key.
c.Spawner.environment = {"ECODE_SERVICE_URL": f"{service_url}/services/ecode/"}

if os.geteuid() == 0:
    # The local spawners run servers as root only when told to.
    c.Spawner.args = ["--allow-root"]
