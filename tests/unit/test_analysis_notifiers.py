"""Alert payload shapes per provider type, severity filtering, and the factory's refusals."""

from __future__ import annotations

import json

import httpx
import pytest

from activities.analysis.events import alert_fields, event_name, should_alert
from activities.analysis.notifiers import Field, notifier_for
from activities.errors import InvalidSpec, NotifierError
from workflows.activity_api import CanaryRef, EventInput
from workflows.model import Phase

FIELDS = [Field("Target", "Deployment/podinfo.test")]
SECRET_URL = "https://hooks.example/services/T000/SECRET"


def _post(type_name: str, severity: str = "info") -> tuple[str, dict[str, object]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        notifier = notifier_for(
            type_name, url=SECRET_URL, username="coalmine", channel="deploys", client=client
        )
        notifier.post(
            workload="podinfo",
            namespace="test",
            message="Halt podinfo.test advancement success rate 69.17% < 99%",
            fields=FIELDS,
            severity=severity,
        )
    return str(seen[0].url), json.loads(seen[0].content)


def test_slack_payload() -> None:
    url, body = _post("slack", "error")
    assert url == SECRET_URL
    assert body["channel"] == "deploys"
    assert body["username"] == "coalmine"
    assert body["icon_emoji"] == ":rocket:"
    (attachment,) = body["attachments"]  # type: ignore[misc]
    assert attachment["color"] == "danger"
    assert attachment["author_name"] == "podinfo.test"
    assert attachment["text"].endswith("69.17% < 99%")
    assert attachment["mrkdwn_in"] == ["text"]
    assert attachment["fields"] == [
        {"title": "Target", "value": "Deployment/podinfo.test", "short": False}
    ]
    assert _post("slack", "info")[1]["attachments"][0]["color"] == "good"  # type: ignore[index]


def test_discord_uses_the_slack_endpoint() -> None:
    url, body = _post("discord")
    assert url == SECRET_URL + "/slack"
    assert body["attachments"][0]["author_name"] == "podinfo.test"  # type: ignore[index]


def test_rocket_uses_hex_colours() -> None:
    assert _post("rocket", "error")[1]["attachments"][0]["color"] == "#FF0000"  # type: ignore[index]
    assert _post("rocket", "warn")[1]["attachments"][0]["color"] == "#0076D7"  # type: ignore[index]


def test_msteams_message_card() -> None:
    _, body = _post("msteams", "error")
    assert body["@type"] == "MessageCard"
    assert body["@context"] == "http://schema.org/extensions"
    assert body["themeColor"] == "FF0000"
    assert body["summary"] == "podinfo.test"
    (section,) = body["sections"]  # type: ignore[misc]
    assert section["activitySubtitle"] == "podinfo.test"
    assert section["facts"] == [{"name": "Target", "value": "Deployment/podinfo.test"}]


def test_gchat_card() -> None:
    _, body = _post("gchat")
    (card,) = body["cards"]  # type: ignore[misc]
    assert card["header"]["subtitle"] == "podinfo.test"
    texts = [s["widgets"][0]["textParagraph"]["text"] for s in card["sections"]]
    assert "69.17% &lt; 99%" in texts[0] or "69.17% < 99%" in texts[0]
    assert texts[1].startswith("Target<br>")


def test_generic_document() -> None:
    _, body = _post("generic", "warn")
    assert body == {
        "name": "podinfo",
        "namespace": "test",
        "message": "Halt podinfo.test advancement success rate 69.17% < 99%",
        "severity": "warn",
        "fields": {"Target": "Deployment/podinfo.test"},
        "source": "coalmine",
    }


def test_unknown_type_is_refused_not_defaulted() -> None:
    with httpx.Client() as client, pytest.raises(InvalidSpec, match=r"'pagerduty'.*slack"):
        notifier_for("pagerduty", url=SECRET_URL, username="u", channel="c", client=client)


def test_refusal_message_hides_the_url() -> None:
    def handle(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        notifier = notifier_for("slack", url=SECRET_URL, username="u", channel="c", client=client)
        assert "SECRET" not in repr(notifier)
        with pytest.raises(NotifierError) as caught:
            notifier.post(workload="a", namespace="b", message="m", fields=[], severity="info")
    assert "SECRET" not in str(caught.value)
    assert "HTTP 404" in str(caught.value)


@pytest.mark.parametrize(
    ("alert", "event", "sent"),
    [
        ("info", "info", True),
        ("info", "warn", True),
        ("info", "error", True),
        ("warn", "info", False),
        ("warn", "warn", True),
        ("warn", "error", True),
        ("error", "info", False),
        ("error", "warn", False),
        ("error", "error", True),
    ],
)
def test_severity_filter(alert: str, event: str, sent: bool) -> None:
    assert should_alert(alert, event) is sent


def _event(message: str, revision: str | None = None) -> EventInput:
    ref = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")
    return EventInput(
        ref=ref,
        reason="Synced",
        message=message,
        phase=Phase.PROGRESSING,
        weight=10,
        revision=revision,
    )


def test_event_names_aggregate_identical_events_only() -> None:
    assert event_name(_event("a"), "coalmine") == event_name(_event("a"), "coalmine")
    assert event_name(_event("a"), "coalmine") != event_name(_event("b"), "coalmine")
    assert event_name(_event("a"), "coalmine").startswith("podinfo.")


def test_alert_fields() -> None:
    fields = alert_fields(_event("m", revision="r1"))
    assert [f.name for f in fields] == ["Target", "Phase", "Canary weight", "Revision"]
    assert fields[0].value == "Deployment/podinfo.test"


def _sent(type_name: str, **target: str) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        notifier = notifier_for(type_name, url=SECRET_URL, client=client, **target)
        assert "xoxb" not in repr(notifier)
        notifier.post(workload="podinfo", namespace="test", message="m", fields=[], severity="info")
    return seen[0]


def test_slack_sends_the_secrets_token_as_a_bearer_token() -> None:
    # Flagger reads the AlertProvider Secret's token key and its Slack notifier sends it as
    # "Authorization: Bearer" (chat.postMessage with a bot token); no token, no header.
    assert _sent("slack", token="xoxb-123").headers["Authorization"] == "Bearer xoxb-123"
    assert "Authorization" not in _sent("slack").headers
    assert "Authorization" not in _sent("slack", token="").headers


@pytest.mark.parametrize("type_name", ["discord", "rocket", "msteams", "gchat", "generic"])
def test_only_slack_is_given_the_token(type_name: str) -> None:
    assert "Authorization" not in _sent(type_name, token="xoxb-123").headers


@pytest.mark.parametrize("type_name", ["slack", "discord", "rocket"])
def test_flaggers_default_username_and_channel(type_name: str) -> None:
    for unset in ({}, {"username": "", "channel": ""}):
        body = json.loads(_sent(type_name, **unset).content)
        assert (body["username"], body["channel"]) == ("flagger", "general")
    body = json.loads(_sent(type_name, username="ci", channel="deploys").content)
    assert (body["username"], body["channel"]) == ("ci", "deploys")
