"""GPU leases of project kernels.

    devices.py  GpuDevice; the host's devices from config or ``nvidia-smi -L`` (MIG too)
    store.py    the lease transactions: exclusive acquire, end, the start-up sweep
    leases.py   GpuLeases: leases tied to kernels, metered in credits, ended on shutdown,
                crash, server restart or when credits run out

A kernel asks for GPUs with ``KERNEL_ECODE_GPUS`` in its start's environment (the
``ecode-python-gpu`` kernelspec sets it to 1); the provisioner leases them and the sandbox
shows the kernel only their device nodes, with ``CUDA_VISIBLE_DEVICES`` naming them.
"""

from .devices import GpuDevice, discover, from_config, parse_nvidia_smi
from .leases import GpuLeases, KernelLease, requested_gpus
from .store import GpuUnavailable

__all__ = [
    "GpuDevice",
    "GpuLeases",
    "GpuUnavailable",
    "KernelLease",
    "discover",
    "from_config",
    "parse_nvidia_smi",
    "requested_gpus",
]
