"""Alert notifiers: one module per chat system, behind the one-method `Notifier` Protocol.

Payloads are shaped as Flagger's notifiers send them, so existing channels render the same
cards: `slack`, `discord` and `rocket` share Slack's attachment format (Discord through its
``/slack``-compatible endpoint), `msteams` sends an Office 365 MessageCard, `gchat` a Google Chat
card, and `generic` a plain JSON document for any other receiver. `notifier_for` picks the module
by an ``AlertProvider``'s ``spec.type``; an unknown type is an `InvalidSpec`, never a silent
default. The hook URL and the token are secrets (they authorize posting): notifiers keep them out
of ``repr`` and out of every error message.

What each takes is what Flagger's ``pkg/notifier/factory.go`` gives it: Slack the URL, the token,
username and channel; Discord and Rocket.Chat the URL, username and channel (no token); Teams,
Google Chat and the generic document the URL alone. An empty username or channel is Flagger's
default, `DEFAULT_USERNAME` (``flagger``) and `DEFAULT_CHANNEL` (``general``), the names existing
channels and their filters already see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from activities.analysis.notifiers._base import Field, Notifier
from activities.analysis.notifiers.gchat import GChatNotifier
from activities.analysis.notifiers.generic import GenericNotifier
from activities.analysis.notifiers.msteams import MSTeamsNotifier
from activities.analysis.notifiers.slack import DiscordNotifier, RocketNotifier, SlackNotifier
from activities.errors import InvalidSpec

DEFAULT_USERNAME = "flagger"
"""The username of a Slack, Discord or Rocket.Chat post whose AlertProvider names none."""
DEFAULT_CHANNEL = "general"
"""The channel of a Slack, Discord or Rocket.Chat post whose AlertProvider names none."""


@dataclass(frozen=True)
class _Target:
    url: str = field(repr=False)
    username: str
    channel: str
    token: str | None = field(repr=False)
    client: httpx.Client = field(repr=False)


_Factory = Callable[[_Target], Notifier]

NOTIFIERS: dict[str, _Factory] = {
    "slack": lambda t: SlackNotifier(t.url, t.username, t.channel, t.client, t.token),
    "discord": lambda t: DiscordNotifier(t.url, t.username, t.channel, t.client),
    "rocket": lambda t: RocketNotifier(t.url, t.username, t.channel, t.client),
    "msteams": lambda t: MSTeamsNotifier(t.url, t.client),
    "gchat": lambda t: GChatNotifier(t.url, t.client),
    "generic": lambda t: GenericNotifier(t.url, t.client),
}
"""``AlertProvider`` ``spec.type`` → notifier."""


def notifier_for(
    type_name: str,
    *,
    url: str,
    username: str = "",
    channel: str = "",
    client: httpx.Client,
    token: str | None = None,
) -> Notifier:
    """The notifier for ``type_name``; raises `InvalidSpec` for an unknown type.

    ``username``/``channel``: the AlertProvider's, empty for Flagger's defaults. ``token``: the
    Secret's ``token`` key, sent by Slack only (as Flagger's factory passes it to Slack only).
    """
    factory = NOTIFIERS.get(type_name)
    if factory is None:
        supported = ", ".join(sorted(NOTIFIERS))
        raise InvalidSpec(
            f"alert provider type {type_name!r} is not supported: use one of {supported}"
        )
    target = _Target(
        url=url,
        username=username or DEFAULT_USERNAME,
        channel=channel or DEFAULT_CHANNEL,
        token=token or None,
        client=client,
    )
    return factory(target)


__all__ = ["DEFAULT_CHANNEL", "DEFAULT_USERNAME", "NOTIFIERS", "Field", "Notifier", "notifier_for"]
