"""The JupyterHub side of ecode: what runs where across the trust boundary.

- ``service.py`` / ``auth.py`` / ``remote.py`` run in the **ecode hub service** (trusted: it
  holds the database, the secrets key, the model keys, the ledger and the agent loop);
- ``server.py`` runs in **each user's single-user server** (untrusted by everyone but its
  owner: it holds nothing shared, forwards the ecode API to the service and executes the tool
  calls the service sends it on the owner's own workspaces).

See ``docs/trust-boundary.md``.
"""

from __future__ import annotations

#: the names of the hub-mode roles an EcodeApp can take (``c.EcodeApp.hub_role``)
SERVICE = "service"
SERVER = "server"
#: the request header through which the service hands a project's environment (its secrets
#: and DATABASE_URL) to the owner's server with a tool call; only honoured from the service
PROJECT_ENV_HEADER = "X-Ecode-Project-Env"
