"""Rocket.Chat: Slack's attachment format with hex colours (blue, red on errors)."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from activities.analysis.notifiers._base import Field, post_json, slack_payload


@dataclass(frozen=True)
class RocketNotifier:
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
            color="#FF0000" if severity == "error" else "#0076D7",
            workload=workload,
            namespace=namespace,
            message=message,
            fields=fields,
        )
        post_json(self.client, self.url, body, kind="rocket")
