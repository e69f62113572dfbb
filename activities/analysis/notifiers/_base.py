"""What every notifier shares: the Protocol, a field of a message, and the JSON POST.

`post_json` treats any 2xx as delivered (Flagger accepts only 200; Teams and some proxies answer
202) and raises `NotifierError` otherwise. Its messages name the status and the notifier type,
never the URL: for Slack, Discord, Teams or Google Chat the URL *is* the credential. A token, when
the notifier has one (Slack's, from the AlertProvider Secret's ``token`` key), goes in an
``Authorization: Bearer`` header (RFC 6750), as Flagger's ``postMessage`` sends it, so the
address can be ``https://slack.com/api/chat.postMessage`` and a bot token posts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from activities.errors import NotifierError


@dataclass(frozen=True)
class Field:
    """One name/value line of an alert (Flagger's ``notifier.Field``)."""

    name: str
    value: str


class Notifier(Protocol):
    """Posts one alert message about a canary."""

    def post(
        self, *, workload: str, namespace: str, message: str, fields: list[Field], severity: str
    ) -> None:
        """Deliver the message; raises `NotifierError` when the receiver refuses it."""
        ...


def post_json(
    client: httpx.Client,
    url: str,
    payload: dict[str, Any],
    *,
    kind: str,
    token: str | None = None,
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        response = client.post(url, json=payload, headers=headers)
    except httpx.TimeoutException:
        raise NotifierError(f"{kind} notification timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise NotifierError(f"{kind} notification failed: {type(exc).__name__}") from None
    if not response.is_success:
        raise NotifierError(f"{kind} notification refused: HTTP {response.status_code}")


def slack_payload(
    *,
    channel: str,
    username: str,
    color: str,
    workload: str,
    namespace: str,
    message: str,
    fields: list[Field],
) -> dict[str, Any]:
    """Flagger's ``SlackPayload`` with one attachment, shared by Slack, Discord and Rocket.Chat."""
    return {
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [
            {
                "color": color,
                "author_name": f"{workload}.{namespace}",
                "text": message,
                "mrkdwn_in": ["text"],
                "fields": [{"title": f.name, "value": f.value, "short": False} for f in fields],
            }
        ],
    }
