"""The one launcher of everything a project runs: commands, package installs, previews,
releases (and kernels, through ``SandboxLauncher.prepare``).

    policy.py    SandboxPolicy (what to enforce) and SandboxReport (what one launch got)
    mounts.py    the file system inside: system read-only, the project writable, nothing else
    cgroups.py   a cgroup per launch: memory, CPU, pids (v1 or v2, where the host allows)
    launcher.py  SandboxLauncher: bubblewrap namespaces + rlimits + cgroups, reports gaps
    config.py    the launcher of a running server, from c.EcodeApp.sandbox* traits
"""

from .config import create_sandbox_launcher, server_paths
from .launcher import BwrapSupport, PreparedLaunch, SandboxLauncher
from .policy import SandboxPolicy, SandboxReport

__all__ = [
    "BwrapSupport",
    "PreparedLaunch",
    "SandboxLauncher",
    "SandboxPolicy",
    "SandboxReport",
    "create_sandbox_launcher",
    "server_paths",
]
