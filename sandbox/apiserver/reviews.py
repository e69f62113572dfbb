"""Access reviews (authorization.k8s.io/v1): the sandbox authorizes everything, and says so.

There is no authentication or authorisation in the sandbox, so every SelfSubjectAccessReview,
SubjectAccessReview and LocalSubjectAccessReview is answered ``allowed: true`` and a
SelfSubjectRulesReview lists one rule that allows every verb on every resource. That makes
``kubectl auth can-i`` (and clients that check their permissions at start-up) truthful about the
sandbox rather than failing with 404. The reviews are answered, never stored, as in Kubernetes. To
learn which permissions a component really needs, read the audit log (``/sandbox/audit``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.apiserver.handlers import Call
from sandbox.apiserver.responses import read_object, respond

Obj = dict[str, Any]

GROUP = "authorization.k8s.io"
_REASON = "the sandbox cluster authorizes every request"
_EVERYTHING: Obj = {
    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    "incomplete": False,
}


async def handle_review(call: Call) -> web.Response:
    body = await read_object(call.request)
    status = _EVERYTHING if call.rt.kind == "SelfSubjectRulesReview" else {"allowed": True}
    answer = {
        "kind": call.rt.kind,
        "apiVersion": call.rt.api_version(call.target.version),
        "metadata": {"creationTimestamp": None},
        "spec": body.get("spec") or {},
        "status": {**status, "reason": _REASON} if "allowed" in status else status,
    }
    return respond(answer, 201)
