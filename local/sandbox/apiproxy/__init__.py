"""A reverse proxy in front of the real kube-apiserver, serving the sandbox's test-only extras.

The fault and integration suites rely on two things no Kubernetes API server has: fault injection
(``/sandbox/faults``) and a queryable audit log (``/sandbox/audit``). The proxy adds them without
touching the server: requests are forwarded untouched (credentials included, streamed both ways);
fault rules are applied in front, matched on the request's `RequestInfo` parsed exactly as the
apiserver parses it; the audit log is the apiserver's own ``--audit-log-path`` file, mapped to the
entries the stand-in API server used to return. Modules: `requestinfo` (URL and method → verb,
group, resource, namespace, name), `faults`, `audit`, `proxy` (the aiohttp server)::

    proxy = ApiProxy(
        upstream="https://127.0.0.1:6443",
        upstream_ssl_context=trusts_cluster_ca,
        ssl_context=serving_cert_for_127_0_0_1,
        audit_log=state / "audit.log",
    )
    await proxy.start()
    proxy.url                      # what kubeconfigs point at
    proxy.faults.add({"verb": "patch", "resource": "deployments", "status": 500, "times": 1})
    await proxy.audit.query({"namespace": "test"})
    await proxy.close()
"""

from __future__ import annotations

from sandbox.apiproxy.audit import AuditEntry, AuditLog, entry_from_event
from sandbox.apiproxy.faults import FaultRule, FaultRuleError, Faults
from sandbox.apiproxy.proxy import ApiProxy
from sandbox.apiproxy.requestinfo import RequestInfo, request_info

__all__ = [
    "ApiProxy",
    "AuditEntry",
    "AuditLog",
    "FaultRule",
    "FaultRuleError",
    "Faults",
    "RequestInfo",
    "entry_from_event",
    "request_info",
]
