"""The real Kubernetes control plane the local stack and the tests run on (built from source by
scripts/build-k8s.sh): see controlplane.py."""

from sandbox.cluster.binaries import Build, NotBuilt, locate
from sandbox.cluster.controlplane import (
    ControlPlane,
    ControlPlaneError,
    Ports,
    kubeconfig,
)
from sandbox.cluster.kwok import READY_DELAY_ANNOTATION

__all__ = [
    "READY_DELAY_ANNOTATION",
    "Build",
    "ControlPlane",
    "ControlPlaneError",
    "NotBuilt",
    "Ports",
    "kubeconfig",
    "locate",
]
