"""Where the built control plane is: ``scripts/build-k8s.sh`` builds it once into a directory
outside the repository, keyed by the pinned versions, and tells its path with ``--print-dir``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.tools import REPO

BUILD_SCRIPT = REPO / "scripts" / "build-k8s.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class NotBuilt(RuntimeError):
    """The control plane's binaries are missing: the message says how to build them."""


@dataclass(frozen=True)
class Build:
    root: Path

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    @property
    def crds(self) -> Path:
        return self.root / "crds"

    @property
    def kwok_stages(self) -> Path:
        return self.root / "kwok-stages"


def locate() -> Build:
    """The finished build for the pinned versions (``COALMINE_K8S_DIR`` overrides the lookup)."""
    override = os.environ.get("COALMINE_K8S_DIR")
    if override:
        root = Path(override)
    else:
        out = subprocess.run(
            [str(BUILD_SCRIPT), "--print-stamp"], capture_output=True, text=True, check=True
        )
        stamp = Path(out.stdout.strip())
        root = stamp.parent
    missing = [c for c in COMPONENTS if not (root / "bin" / c).exists()]
    if missing or (not override and not stamp.exists()):
        raise NotBuilt(
            f"the Kubernetes control plane is not built in {root} (missing: "
            f"{', '.join(missing) or 'completion stamp'}): run `make setup` "
            "(scripts/build-k8s.sh, about 25 minutes once, then cached)"
        )
    return Build(root)
