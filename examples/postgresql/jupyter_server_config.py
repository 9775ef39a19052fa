# ecode on PostgreSQL: a Jupyter server (or the ecode hub service) whose database is shared by
# several processes of ONE trusted deployment, e.g. the service of a hub behind a load
# balancer, or one team server. Whoever controls a process that holds this URL and key can
# read and change everything in the database (docs/trust-boundary.md): never give them to
# users' own servers on a hub; there, run the ecode service (examples/jupyterhub/).
# Create the schema once (and after each upgrade of ecode-jupyter):
#   ECODE_DATABASE_URL=postgresql+psycopg://ecode:PASSWORD@db.internal/ecode jupyter ecode db upgrade
import os

c = get_config()  # noqa: F821

c.EcodeApp.database_url = os.environ.get(
    "ECODE_DATABASE_URL", "postgresql+psycopg://ecode@127.0.0.1:5432/ecode"
)
# Storage every process of the deployment sees, so they work on the same files.
c.EcodeApp.workspace_root = "/srv/ecode/workspaces"
# One key for every process of the deployment, so any of them can read any project's secrets.
# Generate with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
c.EcodeApp.secrets_key = os.environ["ECODE_SECRETS_KEY"]
