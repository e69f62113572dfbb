"""Slack incoming webhooks: one attachment, green ("good") or red ("danger") on errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from activities.analysis.notifiers._base import Field, post_json, slack_payload


@dataclass(frozen=True)
class SlackNotifier:
    url: str = field(repr=False)
    username: str
    channel: str
    client: httpx.Client = field(repr=False)

    def post(
        self, *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
    ) -> None:
        body = slack_payload(
            channel=self.channel,
            username=self.username,
            color="danger" if severity == "error" else "good",
            workload=workload,
            namespace=namespace,
            message=message,
            fields=fields,
        )
        post_json(self.client, self.url, body, kind="slack")
