"""Where the outside binaries the sandbox runs (Prometheus, hey) are found.

Order: the environment variable (``COALMINE_PROMETHEUS_BIN``, ``COALMINE_HEY_BIN``), then the
repository's ``.tools/bin`` (filled by ``scripts/fetch-tools.sh``), then ``PATH``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # local/sandbox/tools.py → the repository
TOOLS_BIN = REPO / ".tools" / "bin"


class ToolMissing(RuntimeError):
    """A binary the sandbox needs is not installed."""


def find_tool(name: str, env_var: str, *, required: bool = True) -> str | None:
    """The path of ``name``: ``$env_var``, else ``<repo>/.tools/bin/name``, else ``PATH``."""
    configured = os.environ.get(env_var)
    if configured:
        if not Path(configured).is_file():
            raise ToolMissing(f"{env_var}={configured} does not exist")
        return configured
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None and required:
        raise ToolMissing(f"{name} not found: set {env_var} or run scripts/fetch-tools.sh")
    return found


def prometheus_bin() -> str:
    path = find_tool("prometheus", "COALMINE_PROMETHEUS_BIN")
    assert path is not None  # required=True raises instead
    return path


def hey_bin() -> str | None:
    return find_tool("hey", "COALMINE_HEY_BIN", required=False)
