"""A project's approval policy: ``GET, PUT projects/{id}/policy``.

``{"rules": [{"tool": "run_command", "match": "curl *|wget *", "action": "ask"}, ...]}``:
editors read it, the owner (or an admin member) replaces it; see ``projects/policy.py``.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import EcodeHandler
from .projects import ID


class ProjectPolicyHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        self.finish_json(await self.ecode.policies.get_policy(self.ecode_user, project_id))

    @web.authenticated
    @authorized
    async def put(self, project_id: str) -> None:
        body = self.json_body()
        policy = await self.ecode.policies.set_policy(self.ecode_user, project_id, body)
        self.finish_json(policy)


default_handlers = [(rf"/api/ecode/projects/{ID}/policy", ProjectPolicyHandler)]
