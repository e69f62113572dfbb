"""Alert notifiers: one module per chat system, behind the one-method `Notifier` Protocol.

Payloads are shaped as Flagger's notifiers send them, so existing channels render the same
cards: `slack`, `discord` and `rocket` share Slack's attachment format (Discord through its
``/slack``-compatible endpoint), `msteams` sends an Office 365 MessageCard, `gchat` a Google Chat
card, and `generic` a plain JSON document for any other receiver. `notifier_for` picks the module
by an ``AlertProvider``'s ``spec.type``; an unknown type is an `InvalidSpec`, never a silent
default. The hook URL is a secret (it authorizes posting): notifiers keep it out of ``repr`` and
out of every error message.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from activities.analysis.notifiers._base import Field, Notifier
from activities.analysis.notifiers.gchat import GChatNotifier
from activities.analysis.notifiers.generic import GenericNotifier
from activities.analysis.notifiers.msteams import MSTeamsNotifier
from activities.analysis.notifiers.slack import DiscordNotifier, RocketNotifier, SlackNotifier
from activities.errors import InvalidSpec

_Factory = Callable[[str, str, str, httpx.Client], Notifier]

NOTIFIERS: dict[str, _Factory] = {
    "slack": SlackNotifier,
    "discord": DiscordNotifier,
    "rocket": RocketNotifier,
    "msteams": lambda url, _user, _channel, client: MSTeamsNotifier(url, client),
    "gchat": lambda url, _user, _channel, client: GChatNotifier(url, client),
    "generic": lambda url, _user, _channel, client: GenericNotifier(url, client),
}
"""``AlertProvider`` ``spec.type`` → notifier."""


def notifier_for(
    type_name: str, *, url: str, username: str, channel: str, client: httpx.Client
) -> Notifier:
    """The notifier for ``type_name``; raises `InvalidSpec` for an unknown type."""
    factory = NOTIFIERS.get(type_name)
    if factory is None:
        supported = ", ".join(sorted(NOTIFIERS))
        raise InvalidSpec(
            f"alert provider type {type_name!r} is not supported: use one of {supported}"
        )
    return factory(url, username, channel, client)


__all__ = ["NOTIFIERS", "Field", "Notifier", "notifier_for"]
