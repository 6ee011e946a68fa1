"""CRMScript out of process: a pool of sandbox worker processes (pool.py) that compile and
run scripts under an address-space limit, a CPU-time limit and a wall-clock deadline the
parent enforces by killing the worker (worker.py); runs are scheduled fairly between
tenants (fair.py); parent and worker speak length-prefixed JSON frames (protocol.py)."""

from .fair import FairQueue
from .pool import SandboxConfig, SandboxPool

__all__ = ["FairQueue", "SandboxConfig", "SandboxPool"]
