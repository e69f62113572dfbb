"""Discord: Slack-formatted messages on the webhook's ``/slack`` endpoint, as Flagger sends them."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from activities.analysis.notifiers._base import Field, post_json, slack_payload


def slack_endpoint(url: str) -> str:
    """Discord accepts Slack's format on ``<webhook>/slack``."""
    return url if url.rstrip("/").endswith("/slack") else url.rstrip("/") + "/slack"


@dataclass(frozen=True)
class DiscordNotifier:
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
        post_json(self.client, slack_endpoint(self.url), body, kind="discord")
