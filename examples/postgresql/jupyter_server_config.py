# A server sharing one PostgreSQL database with other users' servers.
# Create the schema once (and after each upgrade of ecode-jupyter):
#   ECODE_DATABASE_URL=postgresql+psycopg://ecode@db.internal/ecode jupyter ecode db upgrade
import os

c = get_config()  # noqa: F821

c.EcodeApp.database_url = os.environ.get(
    "ECODE_DATABASE_URL", "postgresql+psycopg://ecode@127.0.0.1:5432/ecode"
)
# Shared storage so members of a project see the same files.
c.EcodeApp.workspace_root = "/srv/ecode/workspaces"
# One key for every server of the deployment, so any server can read any project's secrets.
# Generate with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
c.EcodeApp.secrets_key = os.environ["ECODE_SECRETS_KEY"]
