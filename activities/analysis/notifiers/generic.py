"""A generic JSON webhook, for receivers that are not a chat system (incident tools, bots).

The document is flat and self-describing::

    {"name": "podinfo", "namespace": "test", "message": "...", "severity": "error",
     "fields": {"Target": "Deployment/podinfo.test", ...}, "source": "coalmine"}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from activities.analysis.notifiers._base import Field, post_json


def document(
    *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
) -> dict[str, Any]:
    return {
        "name": workload,
        "namespace": namespace,
        "message": message,
        "severity": severity,
        "fields": {f.name: f.value for f in fields},
        "source": "coalmine",
    }


@dataclass(frozen=True)
class GenericNotifier:
    url: str = field(repr=False)
    client: httpx.Client = field(repr=False)

    def post(
        self, *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
    ) -> None:
        body = document(
            workload=workload,
            namespace=namespace,
            message=message,
            fields=fields,
            severity=severity,
        )
        post_json(self.client, self.url, body, kind="generic")
