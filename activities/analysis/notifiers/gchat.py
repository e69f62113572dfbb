"""Google Chat: a card headed "Coalmine" with the message and one section per field.

Flagger's card is titled "Flagger"; ours names the tool that sent it, the layout is Flagger's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from activities.analysis.notifiers._base import Field, post_json

_GREY = "#848484"


def _paragraph(text: str) -> dict[str, Any]:
    return {"widgets": [{"textParagraph": {"text": text}}]}


def card(*, workload: str, namespace: str, message: str, fields: list[Field]) -> dict[str, Any]:
    sections = [_paragraph(f"<font color={_GREY}><strong>{message}</strong></font>")]
    sections += [
        _paragraph(f"{f.name}<br><font color={_GREY}><strong>{f.value}</strong></font>")
        for f in fields
    ]
    return {
        "cards": [
            {
                "header": {
                    "title": "Coalmine",
                    "subtitle": f"{workload}.{namespace}",
                    "imageUrl": "",
                },
                "sections": sections,
            }
        ]
    }


@dataclass(frozen=True)
class GChatNotifier:
    url: str = field(repr=False)
    client: httpx.Client = field(repr=False)

    def post(
        self, *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
    ) -> None:
        body = card(workload=workload, namespace=namespace, message=message, fields=fields)
        post_json(self.client, self.url, body, kind="gchat")
