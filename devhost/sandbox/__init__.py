"""A stateful fake of the Azure DevOps REST subset the bundle uses, served over HTTPS on loopback.

`SandboxAdo` (in `server.py`) is the entry point; `python -m devhost.sandbox_ado` runs it standalone.
"""

from devhost.sandbox.server import SandboxAdo

__all__ = ["SandboxAdo"]
