"""Slack's attachment format, spoken by three chat systems with small differences.

- ``slack``: the incoming-webhook URL as given (or ``chat.postMessage`` with a bot token, which
  Slack alone of Flagger's notifiers is given); green ("good") or red ("danger") on errors;
- ``discord``: the same message on the webhook's ``/slack``-compatible endpoint, as Flagger sends;
- ``rocket``: Rocket.Chat wants hex colours: blue, or red on errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from activities.analysis.notifiers._base import Field, post_json, slack_payload


def slack_endpoint(url: str) -> str:
    """Discord accepts Slack's format on ``<webhook>/slack``."""
    return url if url.rstrip("/").endswith("/slack") else url.rstrip("/") + "/slack"


@dataclass(frozen=True)
class SlackNotifier:
    url: str = field(repr=False)
    username: str
    channel: str
    client: httpx.Client = field(repr=False)
    token: str | None = field(default=None, repr=False)
    """Bearer token (the Secret's ``token``); None posts to the webhook URL alone."""

    kind = "slack"
    colors = ("good", "danger")
    """Attachment colour of a normal message, and of an error."""

    def endpoint(self) -> str:
        return self.url

    def post(
        self, *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
    ) -> None:
        body = slack_payload(
            channel=self.channel,
            username=self.username,
            color=self.colors[1] if severity == "error" else self.colors[0],
            workload=workload,
            namespace=namespace,
            message=message,
            fields=fields,
        )
        post_json(self.client, self.endpoint(), body, kind=self.kind, token=self.token)


class DiscordNotifier(SlackNotifier):
    kind = "discord"

    def endpoint(self) -> str:
        return slack_endpoint(self.url)


class RocketNotifier(SlackNotifier):
    kind = "rocket"
    colors = ("#0076D7", "#FF0000")
