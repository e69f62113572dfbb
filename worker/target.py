"""The CI step before a rollout: read the Canary, check its target, set the images, hash it.

Everything that can refuse the input runs before anything changes: the spec is parsed, the target
(the Deployment, or the DaemonSet ``targetRef.kind`` names) is read and every ``--image`` container
is checked against it; only then is the image patch sent (a strategic merge patch, as ``kubectl set
image`` does) and the revision computed the same way the workflow's activities compute it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from activities.errors import ApiUnavailable, KubernetesError
from activities.kubernetes.client import build_api_client
from activities.kubernetes.daemonsets import target_kind
from activities.kubernetes.resources import STRATEGIC_MERGE_PATCH, Resources
from activities.kubernetes.revision import compute_revision, read_configs
from worker.errors import BadInputError, UnreachableError
from worker.settings import KubernetesSettings
from workflows.spec import Canary


@dataclass(frozen=True)
class Target:
    """The target Deployment or DaemonSet as the rollout starts it."""

    canary: Canary
    revision: str
    images: dict[str, str]
    """Container name → image, after the ``--image`` patch."""


def parse_images(values: Sequence[str]) -> dict[str, str]:
    """``CONTAINER=IMAGE`` pairs from ``--image`` flags."""
    images: dict[str, str] = {}
    for value in values:
        container, sep, image = value.partition("=")
        if not sep or not container.strip() or not image.strip():
            raise BadInputError(
                f"--image {value!r}: write CONTAINER=IMAGE, e.g. --image podinfo=ghcr.io/"
                "stefanprodan/podinfo:6.5.1"
            )
        images[container.strip()] = image.strip()
    return images


@contextmanager
def _cluster_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ApiUnavailable as err:
        raise UnreachableError(f"cannot reach the Kubernetes API ({what}): {err}") from err
    except KubernetesError as err:
        raise UnreachableError(f"Kubernetes API error ({what}): {err}") from err


def prepare_target(
    canary: Canary, settings: KubernetesSettings, images: Mapping[str, str]
) -> Target:
    """Check the target exists, set its images, and compute the revision to roll out."""
    try:
        api_client = build_api_client(kubeconfig=settings.kubeconfig, context=settings.context)
    except Exception as err:  # the kubeconfig loader raises several unrelated types
        raise UnreachableError(f"cannot load the kubeconfig: {err}") from err
    res = Resources(api_client)
    ns, name = canary.namespace, canary.spec.target_ref.name
    kind = target_kind(canary)
    what = kind.name.lower()
    with _cluster_errors(f"reading {what} {ns}/{name}"):
        target = res.get(kind, ns, name)
    if target is None:
        raise BadInputError(
            f"target {what} {ns}/{name} not found (spec.targetRef.name, spec.targetRef.kind): "
            "create it first"
        )
    containers = target["spec"]["template"]["spec"]["containers"]
    current: dict[str, str] = {c["name"]: c.get("image", "") for c in containers}
    unknown = sorted(set(images) - set(current))
    if unknown:
        raise BadInputError(
            f"--image: {what} {ns}/{name} has no container {', '.join(unknown)} "
            f"(containers: {', '.join(current)})"
        )
    if any(current[c] != image for c, image in images.items()):
        body = _image_patch(images)
        with _cluster_errors(f"patching {what} {ns}/{name}"):
            target = res.patch(kind, ns, name, body, content_type=STRATEGIC_MERGE_PATCH)
        current.update(images)
    with _cluster_errors(f"computing the revision of {ns}/{name}"):
        revision = compute_revision(target, read_configs(res, ns, target))
    return Target(canary=canary, revision=revision, images=current)


def _image_patch(images: Mapping[str, str]) -> dict[str, Any]:
    # A strategic merge patch: containers merge by name, so only the images change and every
    # other field of the pod template stays as it is.
    containers = [{"name": c, "image": i} for c, i in images.items()]
    return {"spec": {"template": {"spec": {"containers": containers}}}}


def short_image(image: str) -> str:
    """``ghcr.io/stefanprodan/podinfo:6.5.1`` → ``podinfo:6.5.1`` (for summaries)."""
    return image.rsplit("/", 1)[-1]
