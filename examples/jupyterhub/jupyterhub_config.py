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
import pwd
import re
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
        # --EcodeApp.hub_project_servers=True: each project gets a server of its own
        # (/user/{owner}/ecode-{slug}), shared with its members (see the hook below).
        "command": [
            sys.executable,
            "-m",
            "ecode_jupyter.hub.service",
            "--EcodeApp.hub_project_servers=True",
            # The resources a project's server may ask for: PROJECT_PROFILES below, the first
            # the default. An editor picks one when opening a stopped project.
            *(f"--EcodeApp.hub_project_profiles={name}" for name in ("standard", "large")),
        ],
        "environment": service_env,
        # Users open the service's API through their own server; a browser that visits
        # /services/ecode/ directly logs in without a consent page.
        "oauth_no_confirm": True,
    }
]
# An editor of a project holds this on the project's server (a viewer only `access`); the
# project server's Authorizer reads it from the server's shares.
c.JupyterHub.custom_scopes = {
    "custom:ecode:write": {"description": "change files and run code in an ecode project server"}
}
c.JupyterHub.load_roles = [
    {
        # The service reads users (admin flag, groups, their servers), calls the tools of
        # users' servers, starts and stops project servers and shares them with members.
        "name": "ecode-service",
        "services": ["ecode"],
        "scopes": [
            "read:users",
            "read:groups",
            "read:servers",
            "access:servers",
            "servers",
            "shares",
            "custom:ecode:write",
        ],
    },
    {
        # Every user may use the ecode service (their own projects only; roles are ecode's),
        # and their servers may read their own shares (a project server tells editors from
        # viewers by them).
        "name": "user",
        "scopes": ["self", "access:services!service=ecode", "read:shares!user"],
    },
]
# A user's server (and its kernels and terminals, which inherit its environment) holds its
# owner's token only, scoped to what the owner may do anyway: open the ecode service.
def server_token_scopes(spawner):
    scopes = ["users:activity!user", "access:servers!server", "read:shares!server"]
    if spawner.name.startswith("ecode-"):
        # A project's server runs its members' kernels and terminals as the owner's account:
        # its token must not let an editor act as the owner on the ecode service.
        return scopes
    return [*scopes, "access:services!service=ecode"]


c.Spawner.server_token_scopes = server_token_scopes
# Where users' servers reach the service directly (not through the proxy). Nothing else of
# ecode goes into users' servers: they refuse to start if given the database URL or a key.
c.Spawner.environment = {"ECODE_SERVICE_URL": f"{service_url}/services/ecode/"}

if os.geteuid() == 0:
    # The local spawners run servers as root only when told to.
    c.Spawner.args = ["--allow-root"]

PROJECT_ID = re.compile(r"^[0-9a-f]{32}$")
# The admin's profiles for project servers (the service offers these names). The local
# spawners only pass the limits on (MEM_LIMIT, CPU_LIMIT in the server's environment); a
# spawner with containers or cgroups enforces them (KubeSpawner: use its profile_list with
# the same slugs instead, see examples/kubernetes/; SystemdSpawner, DockerSpawner).
PROJECT_PROFILES = {
    "standard": {"mem_limit": "2G", "cpu_limit": 1.0},
    "large": {"mem_limit": "8G", "cpu_limit": 4.0},
}


def ecode_project_server(spawner):
    """A project's own server (`ecode-…`, started by the ecode service): its workspace is
    its root, and its Authorizer enforces the members' roles.

    One machine: the workspace is ~/ecode-projects/{id} of the owner's OS account (the same
    folder the owner's own server shows). On Kubernetes, mount the project's volume instead
    (examples/kubernetes/)."""
    if not spawner.name.startswith("ecode-"):
        return
    project_id = str((spawner.user_options or {}).get("ecode_project", ""))
    if not PROJECT_ID.match(project_id):
        raise ValueError("an ecode project server needs user_options.ecode_project")
    profile = (spawner.user_options or {}).get("profile") or "standard"
    if profile not in PROJECT_PROFILES:
        raise ValueError(f"unknown project server profile {profile!r}")
    spawner.mem_limit = PROJECT_PROFILES[profile]["mem_limit"]
    spawner.cpu_limit = PROJECT_PROFILES[profile]["cpu_limit"]
    account = pwd.getpwnam(spawner.user.name)
    projects = os.path.join(account.pw_dir, "ecode-projects")
    workspace = os.path.join(projects, project_id)
    for folder in (projects, workspace):
        if not os.path.isdir(folder):
            os.mkdir(folder, 0o755)
            os.chown(folder, account.pw_uid, account.pw_gid)
    spawner.notebook_dir = workspace
    spawner.environment = {**spawner.environment, "ECODE_PROJECT_ID": project_id}
    spawner.args = [
        *spawner.args,
        "--ServerApp.authorizer_class=ecode_jupyter.hub.auth.ProjectAuthorizer",
        # The server trusts the hub's answer about a member for this long (default 300 s):
        # a removed member is let out within seconds, not minutes.
        "--HubOAuth.cache_max_age=5",
    ]


c.Spawner.pre_spawn_hook = ecode_project_server
c.JupyterHub.allow_named_servers = True

# -- idle project servers stop by themselves ---------------------------------------------------
# jupyterhub-idle-culler (pip install jupyterhub-idle-culler) stops servers idle for an hour,
# named ones (the projects' servers) included; the next open starts them again with their
# files, and the preview and kernels restart on demand. Releases run in the ecode service and
# are not affected. Left out when the package is not installed.
import importlib.util  # noqa: E402

if importlib.util.find_spec("jupyterhub_idle_culler") is not None:
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                "--timeout=3600",
                "--cull-every=300",
            ],
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "services": ["idle-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        }
    )
