"""An owner index (owner uid → dependents) kept from the store's event stream.

The store scans a whole namespace to list by label; with a thousand Deployments in one namespace a
controller that lists per reconcile would be quadratic. Controllers instead ask this index for
exactly the ReplicaSets of a Deployment or the pods of a ReplicaSet, then ``peek`` each one.
"""

from __future__ import annotations

from sandbox.controllers._meta import Obj, meta


class OwnerIndex:
    """Dependents of one kind, by owner uid: ``{owner_uid: {(namespace, name), …}}``."""

    def __init__(self) -> None:
        self._by_owner: dict[str, set[tuple[str, str]]] = {}
        self._owners_of: dict[tuple[str, str], tuple[str, ...]] = {}

    def observe(self, event_type: str, namespace: str, obj: Obj) -> None:
        md = meta(obj)
        key = (namespace, str(md.get("name")))
        for uid in self._owners_of.pop(key, ()):
            members = self._by_owner.get(uid)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._by_owner[uid]
        if event_type == "DELETED":
            return
        uids = tuple(str(ref.get("uid")) for ref in md.get("ownerReferences") or [])
        if uids:
            self._owners_of[key] = uids
            for uid in uids:
                self._by_owner.setdefault(uid, set()).add(key)

    def dependents(self, owner_uid: str) -> list[tuple[str, str]]:
        return sorted(self._by_owner.get(owner_uid, ()))
