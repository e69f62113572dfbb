"""A request's ``RequestInfo`` as kube-apiserver derives it: verb, group, resource, namespace, name.

The rules are those of ``k8s.io/apiserver/pkg/endpoints/request/requestinfo.go``, so that fault
rules match a request exactly as the real server's audit log and RBAC see it:

- a resource path is ``/api/<version>/…`` (the core group) or ``/apis/<group>/<version>/…`` with at
  least one segment after the version; anything shorter (``/api``, ``/apis/apps/v1``, ``/version``)
  is a non-resource request whose verb is the lower-case HTTP method;
- an optional special verb comes first: ``watch`` (the deprecated ``/watch/`` form) or ``proxy``
  (which takes no subresource);
- otherwise the verb is the method's: POST create, GET/HEAD get, PUT update, PATCH patch, DELETE
  delete;
- ``namespaces/<ns>`` sets the namespace, and is skipped when something other than ``status`` or
  ``finalize`` follows, so ``/api/v1/namespaces/x`` is a *get of namespace x in namespace x*;
- what remains is ``<resource>[/<name>[/<subresource>]]``;
- a get without a name is a ``watch`` when the ``watch`` parameter is anything but ``0`` or
  ``false`` (any case), else a ``list``; a list or watch with the field selector
  ``metadata.name=<n>`` is named ``<n>``;
- a delete without a name is a ``deletecollection``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

_SPECIAL_VERBS = {"proxy", "watch"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A request as the apiserver classifies it (empty strings where a part is absent)."""

    is_resource: bool
    verb: str
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""


def request_info(method: str, path: str, query: str = "") -> RequestInfo:
    """The `RequestInfo` of ``method`` on a decoded URL ``path`` with a raw ``query`` string."""
    non_resource = RequestInfo(is_resource=False, verb=method.lower())
    trimmed = path.strip("/")
    parts = trimmed.split("/") if trimmed else []
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    group = ""
    if parts[0] == "apis":
        if len(parts) < 4:
            return non_resource
        group, parts = parts[1], parts[1:]
    version, parts = parts[1], parts[2:]

    via_path = parts[0] in _SPECIAL_VERBS
    if via_path:
        if len(parts) < 2:
            # The apiserver answers these with an error; as a request, it is a resource request
            # we cannot name, which matches no rule that names a resource.
            return RequestInfo(is_resource=True, verb="", group=group, version=version)
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""

    if not name and verb == "get":
        params = parse_qs(query, keep_blank_values=True)
        watch = params.get("watch")
        verb = "watch" if watch and watch[0].lower() not in ("0", "false") else "list"
        name = _name_from_field_selector(params.get("fieldSelector", []))
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(True, verb, group, version, namespace, resource, name, subresource)


def request_info_of_uri(method: str, uri: str) -> RequestInfo:
    """The `RequestInfo` of a raw request URI (path and query, percent-encoded, as audited)."""
    split = urlsplit(uri)
    return request_info(method, unquote(split.path), split.query)


def _name_from_field_selector(values: list[str]) -> str:
    """``n`` when the (first) field selector requires ``metadata.name`` to equal ``n``.

    As ``fields.Selector.RequiresExactMatch``: one of the comma-separated requirements is
    ``metadata.name=n`` or ``metadata.name==n``; the name must also be a valid path segment.
    """
    if not values:
        return ""
    for term in _split_unescaped(values[0], ","):
        if "!=" in term:
            continue
        field, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and field == "metadata.name":
            name = _unescape(value)
            if name not in ("", ".", "..") and "/" not in name and "%" not in name:
                return name
    return ""


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash (field selector syntax)."""
    terms, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return terms


def _unescape(value: str) -> str:
    out, escaped = [], False
    for char in value:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)
