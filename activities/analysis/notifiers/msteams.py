"""Microsoft Teams: an Office 365 connector ``MessageCard`` with the fields as facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from activities.analysis.notifiers._base import Field, post_json


def card(
    *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
) -> dict[str, Any]:
    subject = f"{workload}.{namespace}"
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": "FF0000" if severity == "error" else "0076D7",
        "summary": subject,
        "sections": [
            {
                "activityTitle": message,
                "activitySubtitle": subject,
                "facts": [{"name": f.name, "value": f.value} for f in fields],
            }
        ],
    }


@dataclass(frozen=True)
class MSTeamsNotifier:
    url: str = field(repr=False)
    client: httpx.Client = field(repr=False)

    def post(
        self, *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
    ) -> None:
        body = card(
            workload=workload,
            namespace=namespace,
            message=message,
            fields=fields,
            severity=severity,
        )
        post_json(self.client, self.url, body, kind="msteams")
