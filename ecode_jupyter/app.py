"""EcodeApp: the Jupyter Server extension. Traits, settings, handlers, stop — nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import signal
from pathlib import Path
from typing import Any, cast

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from tornado.routing import AnyMatches, Rule
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Int,
    List,
    Set,
    TraitError,
    Unicode,
    Union,
    default,
    validate,
)

from .agent.config import create_agent_manager
from .billing import make_billing_manager
from .checkpoints import CheckpointManager
from .context import EcodeContext, build_context
from .db.session import redact_url
from .deploy.gateway import start_gateway
from .deploy.manager import create_deploy_manager
from .exceptions import SchemaOutOfDate
from .handlers import audit, members, open_project, policy, projects, runs, secrets
from .handlers import billing as billing_handlers
from .handlers import checkpoints as checkpoint_handlers
from .handlers import deploy as deploy_handlers
from .handlers import gpus as gpu_handlers
from .handlers import kernels as kernel_handlers
from .handlers import openapi as openapi_handlers
from .handlers.app_router import KeyedAppRouter
from .handlers.base import fallback_handlers
from .hub import SERVER as HUB_SERVER
from .hub import SERVICE as HUB_SERVICE
from .identity import EcodeUser, resolve_user
from .kernels.gpus import GpuLeases
from .kernels.gpus import discover as gpu_discover
from .kernels.gpus import from_config as gpu_from_config
from .kernels.host import KERNEL_NAME, KernelHost
from .kernels.host import SETTINGS_KEY as KERNEL_HOST_KEY
from .kernels.host import SPEC_DIR as KERNEL_SPEC_DIRS
from .kernels.pool import KernelPool
from .kernels.server import ServerKernels, without_nagle
from .ratelimit import DEFAULT_RATE_LIMITS, make_rate_limiter, parse_limits
from .sandbox import SandboxLauncher, create_sandbox_launcher
from .tools import http as tools_http
from .tools.context import ManagerProjectAccess, ProjectAccess
from .workspace.writer import remove_interrupted_writes

log = logging.getLogger(__name__)

HANDLER_MODULES = [
    projects,
    open_project,
    members,
    secrets,
    policy,
    audit,
    tools_http,
    billing_handlers,
    runs,
    deploy_handlers,
    kernel_handlers,
    gpu_handlers,
    checkpoint_handlers,
    openapi_handlers,
]


class EcodeApp(ExtensionApp):
    name = "ecode_jupyter"
    description = "E-Code: one prompt to a running project, inside Jupyter"
    load_other_extensions = True

    database_url = Unicode(
        help="""SQLAlchemy URL of the ecode database. Default: a SQLite file
        `ecode/ecode.sqlite` in the Jupyter data dir. Use `postgresql+psycopg://user@host/db`
        for a deployment shared by many users. Env fallback: ECODE_DATABASE_URL.""",
    ).tag(config=True)

    @default("database_url")
    def _default_database_url(self) -> str:
        env = os.environ.get("ECODE_DATABASE_URL")
        if env:
            return env
        path = Path(jupyter_data_dir()) / "ecode" / "ecode.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    db_auto_upgrade = Bool(
        None,
        allow_none=True,
        help="""Upgrade the database schema at start-up. Default (None): yes for SQLite (the
        file is backed up first), no for PostgreSQL, where `jupyter ecode db upgrade` does it
        and a server on a stale schema refuses to start.""",
    ).tag(config=True)

    workspace_root = Unicode(
        help="""Folder where project workspaces live, one sub-folder per project id.
        Default: `ecode-projects` under the server's root_dir, so projects show in Lab's file
        browser. Env fallback: ECODE_WORKSPACE_ROOT.""",
    ).tag(config=True)

    @default("workspace_root")
    def _default_workspace_root(self) -> str:
        env = os.environ.get("ECODE_WORKSPACE_ROOT")
        if env:
            return env
        root = getattr(self.serverapp, "root_dir", None) or os.getcwd()
        return str(Path(root) / "ecode-projects")

    trash_retention_days = Float(
        30.0,
        help="Days a deleted project stays restorable before it is purged. Default: 30 days.",
    ).tag(config=True)

    purge_interval_s = Float(
        3600.0,
        help="Seconds between sweeps that purge expired deleted projects. Default: 3600 s.",
    ).tag(config=True)

    secrets_key = Unicode(
        help="""Fernet key(s) encrypting project secrets, comma-separated (the first
        encrypts, all decrypt, for rotation). Default: read from `secrets_key_file`. Env
        fallback: ECODE_SECRETS_KEY.""",
    ).tag(config=True)

    @default("secrets_key")
    def _default_secrets_key(self) -> str:
        return os.environ.get("ECODE_SECRETS_KEY", "")

    secrets_key_file = Unicode(
        help="""File holding the Fernet key for secrets, created with mode 0600 on first use.
        Default: `ecode/secrets.key` in the Jupyter data dir.""",
    ).tag(config=True)

    @default("secrets_key_file")
    def _default_secrets_key_file(self) -> str:
        return str(Path(jupyter_data_dir()) / "ecode" / "secrets.key")

    owner_name = Unicode(
        help="""In a stock single-user Jupyter server every login is the server's owner; this
        is the username their projects are stored under. Default: the OS user name.
        (Under JupyterHub or a custom IdentityProvider the identity's username is used.)""",
    ).tag(config=True)

    @default("owner_name")
    def _default_owner_name(self) -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "owner"

    owner_is_admin = Bool(
        True,
        help="""In a stock single-user server, the owner is an ecode admin (may read the audit
        trail and grant credits). Default: True.""",
    ).tag(config=True)

    admin_users = Set(
        Unicode(),
        help="""Usernames that are ecode admins in any deployment. JupyterHub admins are
        admins too. Default: empty.""",
    ).tag(config=True)

    max_projects_per_user = Float(
        500,
        help="Most projects one user may own (deleted ones count until purged). Default: 500.",
    ).tag(config=True)

    model_prices = Dict(
        help="""Model prices in micro-credits per million tokens (1 credit = 1,000,000
        micro-credits), merged over the shipped defaults (list prices with 1 credit = 1 US
        dollar), e.g. ``{"my-model": {"input": 3000000, "output": 15000000, "cache_write":
        3750000, "cache_read": 300000}}``. Cache prices default to the input price. A model
        with no price is refused unless it is in free_models. Default: {} (shipped table).""",
    ).tag(config=True)

    free_models = List(
        Unicode(),
        help="""Models that cost nothing, such as local models behind OPENAI_BASE_URL. The
        `offline` provider is always free. Default: [].""",
    ).tag(config=True)

    monthly_allowance = Float(
        5.0,
        help="""Credits each user gets at the start of every month (UTC), on first use; what
        is left of it lapses when the month ends (granted credits never lapse). Admins set
        per-user allowances with PUT /api/ecode/billing/budgets. Default: 5 credits.""",
    ).tag(config=True)

    reservation_ttl_s = Float(
        1800.0,
        help="""Seconds a credit reservation for one model call may stay open before it is
        released as expired (a crash mid-call). Default: 1800 s.""",
    ).tag(config=True)

    billing_sweep_interval_s = Float(
        300.0,
        help="Seconds between sweeps that release expired credit reservations. Default: 300 s.",
    ).tag(config=True)

    # -- rate limits (ratelimit.py) -------------------------------------------------------
    rate_limits = Dict(
        dict(DEFAULT_RATE_LIMITS),
        help="""Most events one user may cause per window, by kind: "runs" (agent runs
        started), "model_calls" (each model call of the agent), "tool_calls" (each MCP tool
        call, over HTTP or by the agent). Each value is "N/second", "N/minute" or "N/hour"
        (fixed windows, counted across all processes that share the database or Redis); 0 or
        a kind left out means unlimited. Past a limit the API answers 429 with Retry-After.
        Default: {"runs": "20/minute", "model_calls": "300/minute",
        "tool_calls": "1200/minute"}.""",
    ).tag(config=True)

    @validate("rate_limits")
    def _validate_rate_limits(self, proposal: Any) -> dict[str, Any]:
        try:
            parse_limits(proposal["value"])
        except ValueError as exc:
            raise TraitError(str(exc)) from None
        return dict(proposal["value"])

    rate_limit_admins = Bool(
        True,
        help="""Apply rate_limits to admins too (a leaked admin token is the one most worth
        bounding). False exempts admins. Default: True.""",
    ).tag(config=True)

    redis_url = Unicode(
        help="""Redis URL (e.g. `redis://127.0.0.1:6379/0`) where rate-limit counters live,
        shared by every server of a deployment. Default "": the counters live in the ecode
        database. Env fallback: ECODE_REDIS_URL.""",
    ).tag(config=True)

    @default("redis_url")
    def _default_redis_url(self) -> str:
        return os.environ.get("ECODE_REDIS_URL", "")

    # -- the agent (agent/) -------------------------------------------------------------
    agent_provider = Unicode(
        "",
        help="""Model provider of agent runs: anthropic, openai, openai-compatible or offline.
        Default "": chosen from the environment (ANTHROPIC_API_KEY, then OPENAI_API_KEY, then
        OPENAI_BASE_URL; with none of them the offline provider, which uses no AI).""",
    ).tag(config=True)

    agent_model = Unicode(
        "",
        help="""Model of agent runs that name none (a run's or project's model wins).
        Default "": the provider's default model.""",
    ).tag(config=True)

    allowed_models = List(
        Unicode(),
        help="""Models users may run the agent with, as model ids ("claude-sonnet-4-5") or
        provider:model ("openai:gpt-5"); enforced on the server for every way in (REST, Lab's
        picker, %ecode, jupyter ecode, continue). The offline provider is always allowed.
        Default []: every priced model.""",
    ).tag(config=True)

    allowed_models_by_group = Dict(
        key_trait=Unicode(),
        value_trait=List(Unicode()),
        help="""More models for members of a hub group, e.g. {"gpu-course": ["claude-opus-4-1"]},
        on top of `allowed_models` (which must then be set: with it empty every model is
        allowed anyway). Default {}.""",
    ).tag(config=True)

    agent_max_steps = Int(40, help="Most model turns in one run. Default: 40.").tag(config=True)

    agent_max_tokens = Int(
        2_000_000,
        help="Most tokens (input, cached and output) one run may use. Default: 2000000.",
    ).tag(config=True)

    agent_max_wall_time_s = Float(
        1800.0, help="Seconds one run may take in all. Default: 1800 s."
    ).tag(config=True)

    approval_admin_rules = List(
        Dict(),
        help="""Approval rules every project's policy starts with, which its own rules cannot
        override (an admin's ceiling), e.g. [{"tool": "run_command", "match": "curl *|wget *",
        "action": "ask"}]; same form as PUT projects/{id}/policy. Default []: none.""",
    ).tag(config=True)

    approval_default_rules = List(
        Dict(),
        help="""Approval rules applied after every project's own (defaults a project's rules
        may override), e.g. [{"tool": "install_packages", "action": "ask"}]. Default []: a
        call no rule fits runs.""",
    ).tag(config=True)

    @validate("approval_admin_rules", "approval_default_rules")
    def _validate_approval_rules(self, proposal: Any) -> list[dict[str, Any]]:
        from .exceptions import InvalidInput
        from .projects.policy import parse_rules

        try:
            rules = parse_rules({"rules": list(proposal["value"])})
        except InvalidInput as exc:
            msg = f"c.EcodeApp.{proposal['trait'].name}: {exc.message}"
            raise TraitError(msg) from None
        return [rule.to_json() for rule in rules]

    approval_timeout_s = Float(
        600.0,
        help="""Seconds an agent run waits for a person to answer an approval request (a tool
        call the project's policy asks about, or a plan-mode plan) before it fails with reason
        approval_timeout. Default: 600 s.""",
    ).tag(config=True)

    agent_max_cost_micros = Int(
        0,
        help="""Most micro-credits one run may spend; 0 for no cap of its own (credit budgets
        still apply). Default: 0.""",
    ).tag(config=True)

    agent_max_output_tokens = Int(
        8192, help="Most output tokens of one model turn. Default: 8192."
    ).tag(config=True)

    agent_tool_result_chars = Int(
        12_000,
        help="""Characters of one tool result the model sees (head and tail kept).
        Default: 12000.""",
    ).tag(config=True)

    agent_max_verify_attempts = Int(
        3,
        help="Times the tests may fail verification before the run fails. Default: 3.",
    ).tag(config=True)

    agent_connect_timeout_s = Float(
        10.0,
        help="""Seconds to wait for a connection to the model's API before the attempt fails
        (and is retried). Default: 10 s.""",
    ).tag(config=True)

    agent_read_timeout_s = Float(
        120.0,
        help="""Seconds to wait for the next bytes from the model's API, before and while it
        streams an answer: a connection that goes silent this long fails the attempt (which is
        retried) instead of hanging the run. Default: 120 s.""",
    ).tag(config=True)

    agent_max_retries = Int(
        4,
        help="""Times one model call is retried after a rate limit (429), overload (529, 503),
        server error, timeout or a stream that broke off; each wait shows in the run's feed.
        Default: 4.""",
    ).tag(config=True)

    agent_retry_backoff_s = Float(
        1.0,
        help="""Seconds before the first retry of a model call when the API names no wait; it
        doubles per retry (with jitter), up to 30 s. Default: 1 s.""",
    ).tag(config=True)

    agent_max_retry_after_s = Float(
        60.0,
        help="""Longest `retry-after` from a model API that a run waits for; an API asking for
        longer ends the run with a message saying so. Default: 60 s.""",
    ).tag(config=True)

    agent_max_concurrent_runs = Int(
        4, help="Runs this server runs at once; others wait queued. Default: 4."
    ).tag(config=True)

    agent_offline_installs = Bool(
        True,
        help="""Let the offline provider install a template's missing requirements into the
        project's .venv (needs a package index). Default: True.""",
    ).tag(config=True)

    agent_listen_for_events = Bool(
        True,
        help="""On PostgreSQL, hear run events that other server processes record through
        LISTEN/NOTIFY (one connection per process), so a feed of a run another process runs
        is live. Off, or while the connection is down, such feeds poll every second; turn it
        off behind a pooler in transaction mode, which cannot LISTEN. Default: True.""",
    ).tag(config=True)

    # -- previews and releases (deploy/) --------------------------------------------------
    preview_origin = Unicode(
        "",
        help="""Origin that serves project apps, e.g. `https://apps.example.com` (a host that
        reaches this server). Default "": apps are served on the Jupyter origin inside a
        `Content-Security-Policy: sandbox` without `allow-same-origin`, so their pages cannot
        script Jupyter; on a separate origin whose host name is not one Jupyter is reached by
        (browsers share cookies between ports), e.g. `http://apps.localhost:8890`, they keep
        an origin of their own (cookies, localStorage); Jupyter's pages redirect there.""",
    ).tag(config=True)

    preview_port = Int(
        0,
        help="""Port of the app gateway, which serves project apps on an origin of their own
        from a process of its own (started and watched by this server), so app traffic does
        not wait behind Jupyter's work (and a busy app does not slow Jupyter's). 0 (default):
        no gateway, apps are served by the Jupyter server itself. With a port set and
        `preview_origin` empty, the preview origin is `http://127.0.0.1:{preview_port}`; behind
        a reverse proxy, set `preview_origin` to the public origin that reaches this port.""",
    ).tag(config=True)

    preview_ip = Unicode(
        "127.0.0.1",
        help="""Address the app gateway listens on (see `preview_port`). Default: 127.0.0.1.""",
    ).tag(config=True)

    app_idle_timeout_s = Float(
        3600.0,
        help="""Seconds a preview may go without a request before it is stopped; 0 never
        stops one. Live releases are not stopped for idleness. Default: 3600 s.""",
    ).tag(config=True)

    app_start_timeout_s = Float(
        60.0,
        help="""Seconds an app has after starting to answer its health check. Default: 60 s.""",
    ).tag(config=True)

    app_log_lines = Int(
        2000, help="Lines of each app's log kept in memory for the log stream. Default: 2000."
    ).tag(config=True)

    releases_dir = Unicode(
        help="""Folder of the release store (content-addressed file blobs) and the folders
        releases run from. Default: `ecode/releases` in the Jupyter data dir.""",
    ).tag(config=True)

    @default("releases_dir")
    def _default_releases_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "ecode" / "releases")

    # -- checkpoints and undo (checkpoints/) -------------------------------------------------
    checkpoints_dir = Unicode(
        help="""Folder of the projects' checkpoints (content-addressed files after every agent
        step, for undo and restore), outside every workspace so project code cannot change
        them. Default: `ecode/checkpoints` in the Jupyter data dir.""",
    ).tag(config=True)

    @default("checkpoints_dir")
    def _default_checkpoints_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "ecode" / "checkpoints")

    checkpoint_retention = Int(
        200,
        help="""Checkpoints kept per project (the newest; older ones and the files only they
        held are removed, so runs older than that can no longer be undone); 0 keeps none and
        turns checkpoints off. Default: 200.""",
    ).tag(config=True)

    # -- the sandbox of project processes (sandbox/) -----------------------------------------
    sandbox = Enum(
        ["auto", "required", "off"],
        "auto",
        help="""How project code (commands, package installs, previews, releases) is confined.
        "auto" (default): in a bubblewrap sandbox (namespaces, cgroups, rlimits) where the host
        allows it, otherwise run anyway with a warning in every command's output and app log.
        "required": refuse to run project code when bubblewrap is unusable. "off": plain
        processes with the server's rights (rlimits and a clean environment only).""",
    ).tag(config=True)

    sandbox_network = Enum(
        ["on", "loopback"],
        "on",
        help="""Network of sandboxed commands. "on" (default): the host's network, so pip and
        npm reach their indexes (the host's loopback too: the Jupyter server answers it only
        with a token, which sandboxed code cannot read). "loopback": a private network
        namespace with only its own loopback. Apps (previews, releases) always share the
        host's network, since the server's proxy reaches them there.""",
    ).tag(config=True)

    sandbox_memory_limit = Int(
        4 * 1024**3,
        help="""Memory (bytes) one project process and everything it starts may use (a cgroup
        limit; the kernel kills past it). 0: no limit. Default: 4 GiB.""",
    ).tag(config=True)

    sandbox_pids_limit = Int(
        1024,
        help="""Processes and threads one project process may have at once (pids cgroup; the
        brake on fork bombs, which RLIMIT_NPROC is not for a root server). 0: no limit.
        Default: 1024.""",
    ).tag(config=True)

    kernel_pool_size = Int(
        1,
        help="""Project kernels started ahead for each project opened in Lab, so its next
        notebook or execute_code starts at once (kernels/pool.py). 0: no warm pool.""",
    ).tag(config=True)

    kernel_pool_max = Int(
        4,
        help="""At most this many pooled (started, unclaimed) kernels on the server; warming
        another project shuts down those of the project warmed longest ago.""",
    ).tag(config=True)

    sandbox_cpu_limit = Float(
        0.0,
        help="""CPU cores one project process may use (cgroup CPU quota), e.g. 2.0 or 0.5.
        0: no limit. Default: 0.""",
    ).tag(config=True)

    sandbox_file_size_limit = Int(
        2 * 1024**3,
        help="""Largest file (bytes) a project process may write (RLIMIT_FSIZE; a write past it
        fails with EFBIG). 0: no limit of the sandbox's own. Default: 2 GiB.""",
    ).tag(config=True)

    sandbox_read_only_paths = List(
        Unicode(),
        help="""Extra folders shown read-only inside the sandbox, e.g. a Conda or Node
        installation outside /usr that project code runs. The server's own Python and the
        node on its PATH are found by themselves. Default: [].""",
    ).tag(config=True)

    # -- GPU leases of project kernels (kernels/gpus/) ------------------------------------
    gpu_devices = List(
        Union([Unicode(), Dict()]),
        default_value=None,
        allow_none=True,
        help="""GPUs project kernels may lease: ids as CUDA_VISIBLE_DEVICES takes them (a
        UUID or an index), or dicts `{"id": "GPU-…", "name": "NVIDIA H200", "nodes":
        ["/dev/nvidia0"]}` (`nodes`: the device nodes bound into the kernel's sandbox; for an
        index N it defaults to /dev/nvidiaN). None (default): found with `nvidia-smi -L` at
        start-up, MIG instances included. []: no GPUs.""",
    ).tag(config=True)

    gpu_prices = Dict(
        help="""Credits per GPU-hour by device model as `nvidia-smi -L` names it, e.g.
        `{"NVIDIA H200": 4, "default": 2}`; a MIG instance is priced by its own name
        ("NVIDIA A100-SXM4-40GB MIG 3g.20gb"), else its GPU's, else "default". Settled in the
        credit ledger like model tokens. Default: {"default": 2} (2 credits per GPU-hour).""",
    ).tag(config=True)

    gpu_sharers = Int(
        1,
        help="""Kernels that may hold one GPU at once. 1 (default): leases are exclusive;
        more lets kernels share a device (each billed in full).""",
    ).tag(config=True)

    gpu_billing_slice_s = Float(
        60.0,
        help="""Seconds of GPU time held ahead in credits and settled at a time: a lease holds
        the next slice before it runs and is ended (its kernel shut down) when the hold is
        refused. Default: 60 s.""",
    ).tag(config=True)

    # -- JupyterHub (hub/) -----------------------------------------------------------
    hub_role = Unicode(
        "",
        help="""This server's part on a JupyterHub with the ecode service. "" (default): a
        server on its own (single user, or a hub without the service: everything in this
        server). "service": the ecode hub service (set by `python -m ecode_jupyter.hub.service`;
        holds the database, keys and agent). "server": a user's server on a hub with the
        service; it holds nothing shared (it refuses to start when given the database URL, the
        secrets key or a model key), forwards the ecode API to the service and runs the tool
        calls the service sends on its owner's workspaces. Default "": "server" when
        `hub_service_url` is set.""",
    ).tag(config=True)

    @default("hub_role")
    def _default_hub_role(self) -> str:
        return "server" if self.hub_service_url else ""

    hub_service_url = Unicode(
        help="""Base URL of the ecode hub service as users' servers reach it, e.g.
        `http://10.0.0.5:10101/services/ecode/`. Setting it makes this a user's server of a hub
        with the service (hub_role "server"). Env fallback: ECODE_SERVICE_URL. Default: "".""",
    ).tag(config=True)

    @default("hub_service_url")
    def _default_hub_service_url(self) -> str:
        return os.environ.get("ECODE_SERVICE_URL", "")

    hub_service_name = Unicode(
        "ecode",
        help="""Name of the ecode service on the hub: users' servers run tool calls only for
        this service (and their owner). Default: ecode.""",
    ).tag(config=True)

    hub_project_profiles = List(
        Unicode(),
        default_value=[],
        help="""(service, with hub_project_servers) The spawner profiles a project's server may
        be started with, as the hub's spawner names them (KubeSpawner `profile_list` slugs, or
        what the hub's pre_spawn_hook reads from `user_options["profile"]`): the admin's
        choice of resources (CPU, memory, GPU) per project. An editor picks one when opening
        the project (`POST projects/{id}/server {"profile": …}`); the first is the default
        (the agent's starts use it). Empty (default): the spawner's own default, and asking
        for a profile is refused.""",
    ).tag(config=True)

    hub_project_servers = Bool(
        False,
        help="""(service) Give each project a server of its own: a named server of its owner,
        `/user/{owner}/ecode-{slug}`, rooted at the project's workspace, started through the
        hub when someone opens the project or the agent needs it, and shared with the project's
        members through the hub's sharing (editors with `custom:ecode:write`). Needs the hub
        config of `examples/jupyterhub/` (a pre_spawn_hook, the custom scope, the service's
        `servers` and `shares` scopes). Default: False (projects live in the owner's default
        server).""",
    ).tag(config=True)

    hub_project_id = Unicode(
        help="""(server) The project this server serves when it is a project's own server
        (set by the hub's pre_spawn_hook); its root folder is then the project's workspace.
        Env fallback: ECODE_PROJECT_ID. Default: "".""",
    ).tag(config=True)

    @default("hub_project_id")
    def _default_hub_project_id(self) -> str:
        return os.environ.get("ECODE_PROJECT_ID", "")

    hub_users_url = Unicode(
        help="""(service) URL at which the hub's proxy serves users' servers, ending with /,
        e.g. `http://127.0.0.1:8000/`; tool calls go to `{hub_users_url}user/{owner}/`.
        Env fallback: ECODE_HUB_USERS_URL. Default: "".""",
    ).tag(config=True)

    @default("hub_users_url")
    def _default_hub_users_url(self) -> str:
        return os.environ.get("ECODE_HUB_USERS_URL", "")

    def build_context(self) -> EcodeContext:
        """The managers for this configuration (the CLI uses this too)."""
        context = build_context(
            database_url=self.database_url,
            workspace_root=self.workspace_root,
            secrets_key=self.secrets_key,
            secrets_key_file=self.secrets_key_file,
            owner_name=self.owner_name,
            admin_users=set(self.admin_users),
            owner_is_admin=self.owner_is_admin,
            trash_retention_days=self.trash_retention_days,
            max_projects_per_user=int(self.max_projects_per_user),
            auto_upgrade=self.db_auto_upgrade,
        )
        # An admin's approval rules around every project's own (projects/policy.py).
        context.policies.configure(self.approval_admin_rules, self.approval_default_rules)
        # Credits around every model call (billing/): the agent, REST and the CLI use it.
        context.extras["billing"] = make_billing_manager(
            context.db,
            model_prices=self.model_prices,
            free_models=self.free_models,
            monthly_allowance=self.monthly_allowance,
            reservation_ttl_s=self.reservation_ttl_s,
            gpu_prices=self.gpu_prices,
        )
        # Per-user rate limits (ratelimit.py): runs, model calls and tool calls check it.
        context.extras["limits"] = make_rate_limiter(
            context.db,
            limits=self.rate_limits,
            redis_url=self.redis_url,
            limit_admins=self.rate_limit_admins,
        )
        return context

    def initialize_settings(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []
        if self.hub_role == HUB_SERVER:
            self._initialize_hub_server()
            return
        try:
            context = self.build_context()
        except SchemaOutOfDate as exc:
            # Refuse to start: serving on a schema we do not understand could lose data.
            self.log.critical("%s", exc.message)
            raise SystemExit(1) from None
        self.log.info("ecode database: %s", redact_url(context.db.url))
        if self.hub_role == HUB_SERVICE:
            # The hub service: tools run in the project owner's server, never here, and the
            # new project's folder is made there too (hub/remote.py).
            from .hub.remote import (
                HubDirectory,
                HubLink,
                ProjectPlacement,
                RemoteToolLayer,
                RemoteWorkspaces,
            )

            directory = HubDirectory(HubLink.from_environment(self.hub_users_url))
            servers = None
            if self.hub_project_servers:
                from .hub.projects import ProjectServers

                servers = ProjectServers(directory, profiles=list(self.hub_project_profiles))
            placement = ProjectPlacement(context, directory, servers)
            if servers is not None:
                context.projects.member_listeners.append(placement.sync_members)
            context.projects.remote_workspaces = RemoteWorkspaces(placement)
            context.extras["tools"] = remote_tools = RemoteToolLayer(context, placement)
            # The same tools for agents outside Jupyter, forwarded the same way (hub/mcp.py).
            from .hub.mcp import SETTINGS_KEY as SERVICE_MCP_KEY
            from .hub.mcp import service_tool_layer

            self.settings[SERVICE_MCP_KEY] = service_tool_layer(remote_tools)
            self.settings["ecode_hub_directory"] = directory
            self.settings["ecode_placement"] = placement
            # Live releases run here, so they outlive users' servers (hub/releases.py), in
            # the sandbox: the service's database, keys and folders are absent inside.
            launcher = create_sandbox_launcher(self)
        else:
            # Every process a project runs starts in the sandbox (sandbox/).
            launcher = create_sandbox_launcher(self)
            # Project kernels (kernels/): the server's own, in the sandbox, shared by the
            # project's notebooks and the agent.
            access = ManagerProjectAccess(context.projects, context.secrets)
            kernels = self._setup_kernels(access, launcher, Path(self.workspace_root), context)
            context.extras["kernels"] = kernels
            # GPU leases of those kernels (kernels/gpus/): the provisioner asks the host.
            context.extras["gpus"] = self._kernel_host.gpus = self._create_gpu_leases(context)
            # The MCP tool layer (tools/): served at /api/ecode/mcp, used in-process by the
            # agent.
            context.extras["tools"] = tools_http.create_tool_layer(
                self.serverapp, context, launcher=launcher, kernels=kernels
            )
            # Checkpoints after agent steps, undo and restore (checkpoints/): where the files
            # are, so not on the hub service.
            if self.checkpoint_retention > 0:
                context.extras["checkpoints"] = CheckpointManager(
                    context, Path(self.checkpoints_dir), keep=self.checkpoint_retention
                )
        # Project changes on the server's event bus: open Labs refresh their project lists
        # whoever made the change (projects/events.py).
        event_logger = getattr(self.serverapp, "event_logger", None)
        if event_logger is not None:
            from .projects.events import ProjectEvents

            context.projects.change_listeners.append(ProjectEvents(event_logger))
        # The agent (agent/): runs, their feeds on the server's event bus too.
        context.extras["agent"] = create_agent_manager(
            self, context, event_logger=getattr(self.serverapp, "event_logger", None)
        )
        # Previews, releases and the app proxy (deploy/).
        deploy = create_deploy_manager(self, context, launcher=launcher)
        if self.hub_role == HUB_SERVICE:
            # The hub service runs releases only, from a staging copy of the project's files
            # fetched from the server they live in (hub/releases.py); previews belong to the
            # project's server.
            from .hub.releases import HubReleaseSource

            deploy.before_snapshot = HubReleaseSource(
                self.settings["ecode_placement"], Path(self.workspace_root).expanduser()
            )
            deploy.previews_here = False
            # Previews run in the project's server, asked through its tools (hub/previews.py).
            deploy.remote_previews = context.extras["tools"].preview
        context.extras["deploy"] = deploy
        self.ecode = context
        self.settings.update({"ecode": context})

    def _initialize_hub_server(self) -> None:
        """A user's server on a hub with the service: no database, no keys (hub/server.py)."""
        from .hub.server import (
            HubServerAccess,
            ProjectServerAccess,
            ServiceLink,
            guard_collaboration_writes,
            shared_secrets_given,
        )
        from .tools.server import ToolLayer
        from .workspace.collab import JupyterLiveDocuments

        given = shared_secrets_given(self)
        if given:
            # Whoever controls this server could read them: refuse rather than leak them.
            self.log.critical(
                "ecode: this is a user's server of a hub with the ecode service "
                "(hub_service_url is set), so it must hold nothing shared, but it was given %s. "
                "Remove them from c.Spawner.environment / the server's config: only the ecode "
                "service holds the database, the secrets key and the model keys.",
                ", ".join(given),
            )
            raise SystemExit(1)
        link = ServiceLink.from_environment(self.hub_service_url, self.hub_service_name)
        serverapp = self.serverapp
        assert serverapp is not None
        access: HubServerAccess
        if self.hub_project_id:
            # A project's own server: its root is the workspace, members come in by the
            # hub's sharing and the Authorizer (hub/auth.py ProjectAuthorizer) keeps viewers
            # to reading, collaboration rooms included.
            access = ProjectServerAccess(
                self.hub_project_id, Path(serverapp.root_dir).expanduser().resolve()
            )
            guard_collaboration_writes()
        else:
            root = Path(self.workspace_root).expanduser().resolve()
            root.mkdir(parents=True, exist_ok=True)
            access = HubServerAccess(root)
        live = JupyterLiveDocuments(
            lambda: serverapp.web_app.settings, Path(serverapp.root_dir).expanduser()
        )
        # Commands the service sends run in the same sandbox as on a server of its own: the
        # server's token, runtime files and the owner's other files stay out of their reach.
        launcher = create_sandbox_launcher(self)
        kernels = self._setup_kernels(
            access,
            launcher,
            access.workspace_root,
            None,
            project_id=self.hub_project_id or None,
        )
        # Previews run here, where the files are, and this server serves them through the
        # hub's proxy; its bookkeeping is a private database of its own (hub/previews.py).
        from .hub.previews import create_server_previews

        local, previews = create_server_previews(self, access, link.owner, launcher)
        self._hub_local = local
        self._hub_tools = ToolLayer(
            access, live=live, launcher=launcher, kernels=kernels, preview_backend=previews
        )
        self.settings.update(
            {
                "ecode_link": link,
                "ecode_access": access,
                "ecode_tools": self._hub_tools,
                # The app proxy (handlers/deploy.py AppProxyHandler) finds the apps here.
                "ecode": local,
            }
        )
        self.log.info("ecode: the ecode API of this server is the hub service at %s", link.url)

    def _setup_kernels(
        self,
        access: ProjectAccess,
        launcher: SandboxLauncher,
        workspace_root: Path,
        context: EcodeContext | None,
        *,
        project_id: str | None = None,
    ) -> ServerKernels:
        """The kernel host (what the ecode provisioner asks) and the agent's kernels."""
        serverapp = self.serverapp
        assert serverapp is not None
        host = KernelHost(access, launcher, workspace_root, project_id=project_id)

        def to_user(handler: Any, user: Any) -> EcodeUser:
            # Who a kernel or session request comes from, as the ecode API would see them.
            if context is None:  # a hub user's server: the owner, or a project's member
                name = str(getattr(user, "username", ""))
                return resolve_user(
                    user,
                    handler.identity_provider,
                    owner_name=name,
                    admin_users=set(),
                    owner_is_admin=False,
                )
            return resolve_user(
                user,
                handler.identity_provider,
                owner_name=context.owner_name,
                admin_users=context.admin_users,
                owner_is_admin=context.owner_is_admin,
            )

        host.watch_requests(serverapp, to_user)
        specs = serverapp.kernel_spec_manager
        assert specs is not None
        remote = bool(getattr(getattr(serverapp, "gateway_config", None), "gateway_enabled", False))
        if remote:
            # Kernels on Enterprise Gateway (c.GatewayClient.url): the gateway's kernelspecs
            # are the menu (its lookups are coroutines, not to be wrapped here) and kernels
            # start there, not through the ecode provisioner; the agent still finds the
            # project's kernel by KERNEL_ECODE_PROJECT, which the gateway passes on.
            self.log.info("ecode: kernels run on the gateway %s", serverapp.gateway_config.url)
        elif KERNEL_NAME not in specs.find_kernel_specs():
            # The package installs the spec into share/jupyter/kernels; where that prefix is
            # not on Jupyter's path (some editable installs, a relocated venv) use its copy.
            specs.kernel_dirs = [*specs.kernel_dirs, str(KERNEL_SPEC_DIRS)]
        # Into the extension's settings: ExtensionApp copies them over the web app's after
        # this method, so a change made to the web app's settings directly would be undone.
        connection = self.settings.get("kernel_websocket_connection_class")
        if connection is not None:
            self.settings["kernel_websocket_connection_class"] = without_nagle(connection)
        self.settings[KERNEL_HOST_KEY] = host
        self._kernel_host = host
        self._kernel_specs = None
        if context is not None and not remote:
            # "Python (My App)" per project in Lab's kernel menu (kernels/specs.py).
            from .kernels.specs import ProjectKernelSpecs

            owner = EcodeUser(context.owner_name, context.owner_name, context.owner_is_admin)
            self._kernel_specs = ProjectKernelSpecs(context.projects, owner)
            self._kernel_specs.install(specs)
        pool = KernelPool(serverapp, host, size=self.kernel_pool_size, limit=self.kernel_pool_max)
        kernels = ServerKernels(serverapp, host, pool=pool)
        kernels.install()
        return kernels

    def _create_gpu_leases(self, context: EcodeContext) -> GpuLeases:
        devices = (
            gpu_from_config(self.gpu_devices) if self.gpu_devices is not None else gpu_discover()
        )
        return GpuLeases(
            context.db,
            context.extras["billing"],
            devices,
            sharers=self.gpu_sharers,
            slice_s=self.gpu_billing_slice_s,
            event_logger=getattr(self.serverapp, "event_logger", None),
        )

    def initialize_handlers(self) -> None:
        if self.hub_role == HUB_SERVER:
            from .hub.server import server_handlers

            self.handlers.extend(server_handlers())
            # This server's previews (hub/previews.py): the app proxy's URLs and its fast
            # lane for keyed requests, as on a server of its own.
            self.handlers.extend(deploy_handlers.app_handlers)
            self._install_app_router(lambda: cast(Any, self._hub_local.extras.get("deploy")))
            return
        if self.hub_role == HUB_SERVICE:
            # The REST contract without what needs a project's files here: the MCP endpoint
            # (tools run in owners' servers) and project kernels. Deploy is served: releases
            # run here (previews answer 501 not_built).
            for module in HANDLER_MODULES:
                if module not in (tools_http, kernel_handlers):
                    self.handlers.extend(module.default_handlers)
            from .hub import mcp as service_mcp

            self.handlers.extend(service_mcp.default_handlers)
            if self.hub_project_servers:
                from .hub import handlers as hub_handlers

                self.handlers.extend(hub_handlers.default_handlers)
            self.handlers.extend(fallback_handlers)
            return
        for module in HANDLER_MODULES:
            self.handlers.extend(module.default_handlers)
        self.handlers.extend(fallback_handlers)
        self._install_app_router(lambda: cast(Any, self.ecode.extras.get("deploy")))

    def _install_app_router(self, manager: Any) -> None:
        # Keyed requests to running apps skip the request-handler machinery: the router is
        # asked first and lets everything else through (handlers/app_router.py).
        serverapp = self.serverapp
        assert serverapp is not None
        web_app = serverapp.web_app
        router = KeyedAppRouter(
            serverapp.base_url,
            manager=manager,
            accepted_hosts=lambda: deploy_handlers.accepted_hosts(web_app),
            settings=web_app.settings,
        )
        web_app.default_router.rules.insert(0, Rule(AnyMatches(), router))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        # JupyterHub stops servers with SIGINT; with no terminal attached jupyter_server leaves
        # SIGINT as KeyboardInterrupt and stop_extension never runs (runs, previews orphaned).
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, serverapp._signal_stop)
        if self.hub_role != HUB_SERVICE:
            # Temporary files of writes a crash cut short (workspace/writer.py), in the
            # background: a large workspace takes a while to walk.
            if self.hub_role != HUB_SERVER:
                root = self.ecode.projects.workspace_root
            elif self.hub_project_id:  # a project's own server: its root is the workspace
                root = self.settings["ecode_access"].workspace(self.hub_project_id)
            else:
                root = self.settings["ecode_access"].workspace_root
            self._tasks.append(
                asyncio.create_task(asyncio.to_thread(remove_interrupted_writes, Path(root)))
            )
        if self.hub_role == HUB_SERVER:
            # Apps a crash of this server left running are stopped, their rows marked.
            await self._hub_local.extras["deploy"].start()
            return  # nothing else of its own: the service holds the shared state
        # Runs this server left running when it last stopped are marked interrupted.
        await self.ecode.extras["agent"].start()
        deploy = self.ecode.extras.get("deploy")
        if deploy is not None:
            # Live releases this server ran when it stopped go live again.
            await deploy.start()
            # The preview origin's own listener, when configured (deploy/gateway.py).
            self._gateway = start_gateway(self, deploy)
            if self._gateway is not None:
                self.log.info(
                    "ecode apps are served at %s (gateway on port %s)",
                    deploy.options.preview_origin,
                    self._gateway.port,
                )
        self._tasks.append(asyncio.create_task(self._purge_loop()))
        gpus = self.ecode.extras.get("gpus")
        if gpus is not None:
            # Leases a crashed or restarted server left end now; then metering and the
            # crash watch of GPU kernels.
            await gpus.start()
            self._tasks.append(asyncio.create_task(gpus.run_forever()))
        # Releases reservations a crash left open (now, at start-up, then periodically).
        sweep = self.ecode.extras["billing"].sweep_forever(self.billing_sweep_interval_s)
        self._tasks.append(asyncio.create_task(sweep))

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.ecode.projects.purge_expired()
                deploy = self.ecode.extras.get("deploy")
                if deploy is not None:
                    # Files only purged projects' releases used go with them.
                    await deploy.collect_release_blobs()
            except Exception:
                log.exception("purging expired projects failed")
            await asyncio.sleep(self.purge_interval_s)

    async def stop_extension(self) -> None:
        if self.hub_role == HUB_SERVER:
            await self._hub_tools.stop()
            await self._hub_local.extras["deploy"].stop_all()
            await asyncio.to_thread(self._hub_local.db.dispose)
            return
        gateway = getattr(self, "_gateway", None)
        if gateway is not None:
            await gateway.stop()
        await self.ecode.extras["agent"].stop()
        await self.ecode.extras["tools"].stop()
        service_mcp = self.settings.get("ecode_service_mcp")
        if service_mcp is not None:
            await service_mcp.stop()  # its MCP sessions with outside clients
        await self.ecode.extras["limits"].aclose()
        deploy = self.ecode.extras.get("deploy")
        if deploy is not None:
            await deploy.stop_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gpus = self.ecode.extras.get("gpus")
        if gpus is not None:
            # GPU kernels stop and their leases are settled while the database is open (the
            # server's own kernel shutdown comes after this).
            await gpus.close()
        await asyncio.to_thread(self.ecode.db.dispose)
