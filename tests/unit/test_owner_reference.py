"""The ownerReference created objects get: the live Canary's, looked up once, only if needed."""

from __future__ import annotations

from typing import Any

from activities.kubernetes.resources import CANARY, CanaryOwner, Kind


class _Canaries:
    """Stands in for `Resources.get`: the Canaries of a cluster, and how often it was asked."""

    def __init__(self, canary: dict[str, Any] | None) -> None:
        self.canary, self.reads = canary, 0

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        assert (kind, namespace, name) == (CANARY, "test", "podinfo")
        self.reads += 1
        return self.canary


def _owner(canary: dict[str, Any] | None) -> tuple[CanaryOwner, _Canaries]:
    res = _Canaries(canary)
    return CanaryOwner(res, "test", "podinfo"), res  # type: ignore[arg-type]


def test_the_canary_in_the_cluster_is_the_controller_owner_as_flagger_sets_it():
    owner, res = _owner({"metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"}})
    expected = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "name": "podinfo",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert owner.reference() == expected
    assert owner.reference() == expected
    assert res.reads == 1


def test_no_canary_in_the_cluster_no_owner_and_one_lookup():
    owner, res = _owner(None)
    assert owner.reference() is None
    assert owner.reference() is None
    assert res.reads == 1


def test_a_canary_being_deleted_owns_nothing_new():
    meta = {"name": "podinfo", "uid": "u-1", "deletionTimestamp": "2026-01-01T00:00:00Z"}
    owner, _ = _owner({"metadata": meta})
    assert owner.reference() is None


def test_no_lookup_until_something_is_created():
    _, res = _owner({"metadata": {"name": "podinfo", "uid": "u-1"}})
    assert res.reads == 0
