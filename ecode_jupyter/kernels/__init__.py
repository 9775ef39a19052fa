"""Project kernels: real Jupyter kernels that run a project's code in its sandbox.

    ecode-python/   the kernelspec ("Python (ecode project)"), installed into
                    share/jupyter/kernels/ with the package; it names the provisioner
    host.py         KernelHost: what the provisioner needs from the running extension (who
                    asked, which project, its environment, the launcher), and which kernel
                    belongs to which project
    provisioner.py  EcodeProvisioner (jupyter_client entry point ``ecode-provisioner``):
                    starts the kernel through the sandbox launcher with the project's
                    environment only, over IPC sockets in a folder of its own
    server.py       ServerKernels: the agent's execute_code on the server's own kernels, so
                    a notebook and the agent share one kernel, Lab lists it, culling applies

Kernels start through ``serverapp.kernel_manager``, so ``/api/kernels``, Lab, culling and
``c.GatewayClient`` see them like any other kernel.
"""

from .host import KernelHost, current_host
from .server import ServerKernels

__all__ = ["KernelHost", "ServerKernels", "current_host"]
