"""AlertProviders read as Flagger reads them, and ``spec.proxy`` used for that provider's posts.

The proxy is a real one on the loopback interface: a forward proxy receives the request line
with the absolute URL (``POST http://hooks.invalid/… HTTP/1.1``), so a post that reaches it names
a host that does not resolve (``.invalid`` never does) and could only have got there through it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from activities.analysis.alerts import AlertSender, AlertTarget, read_target
from activities.analysis.notifiers import Field
from activities.errors import InvalidSpec, NotifierError

HOOK = "http://hooks.invalid/services/T000/SECRET-HOOK"
POST = {
    "workload": "podinfo",
    "namespace": "test",
    "message": "Canary analysis failed",
    "fields": [Field("Target", "Deployment/podinfo.test")],
    "severity": "error",
}


@dataclass
class Proxy:
    url: str
    requests: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    seen = Proxy(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.requests.append((self.command, self.path, json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _provider(**spec: object) -> dict[str, object]:
    return {"apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider", "spec": spec}


def _no_secret(name: str) -> dict[str, str]:
    raise AssertionError(f"no Secret should be read, asked for {name}")


def test_the_providers_proxy_is_read_and_kept_out_of_repr() -> None:
    target = read_target(
        _provider(type="slack", address=HOOK, proxy="http://user:pw@proxy:3128"), _no_secret
    )
    assert target == AlertTarget(
        type="slack",
        url=HOOK,
        proxy="http://user:pw@proxy:3128",
    )  # no username or channel: the notifier posts as Flagger's, "flagger" to "general"
    assert "pw@" not in repr(target)
    assert "SECRET-HOOK" not in repr(target)
    assert read_target(_provider(type="slack", address=HOOK), _no_secret).proxy is None  # type: ignore[union-attr]


def test_the_address_may_come_from_the_secret_as_in_flagger() -> None:
    target = read_target(
        _provider(type="msteams", secretRef={"name": "teams"}, proxy="http://p:1"),
        lambda name: {"address": f"https://{name}.invalid/hook"},
    )
    assert target is not None
    assert (target.url, target.proxy, target.token) == (
        "https://teams.invalid/hook",
        "http://p:1",
        None,
    )


def test_the_secrets_token_is_read_and_kept_out_of_repr() -> None:
    secret = {"address": "https://slack.invalid/api/chat.postMessage", "token": "xoxb-SECRET"}
    target = read_target(_provider(type="slack", secretRef={"name": "slack"}), lambda _: secret)
    assert target is not None
    assert target.token == "xoxb-SECRET"
    assert "xoxb" not in repr(target)


def test_slack_gets_the_secrets_token_as_a_bearer_and_flaggers_username() -> None:
    seen: list[httpx.Request] = []

    def slack(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    sender = AlertSender(timeout_seconds=5, transport=httpx.MockTransport(slack))
    secret = {"address": "https://slack.invalid/api/chat.postMessage", "token": "xoxb-1"}
    target = read_target(_provider(type="slack", secretRef={"name": "s"}), lambda _: secret)
    assert target is not None
    sender.send(target, **POST)  # type: ignore[arg-type]
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer xoxb-1"
    body = json.loads(request.content)
    assert (body["username"], body["channel"]) == ("flagger", "general")


def test_a_missing_secret_or_address_key_names_the_fix() -> None:
    provider = _provider(type="slack", secretRef={"name": "slack"})
    with pytest.raises(InvalidSpec, match="does not exist: create it with an address key"):
        read_target(provider, lambda _: None)
    with pytest.raises(InvalidSpec, match="has no key 'address'"):
        read_target(provider, lambda _: {"token": "t"})


def test_an_alert_goes_through_its_providers_proxy(proxy: Proxy) -> None:
    target = read_target(
        _provider(type="slack", address=HOOK, channel="deploys", proxy=proxy.url), _no_secret
    )
    assert target is not None
    AlertSender(timeout_seconds=5).send(target, **POST)  # type: ignore[arg-type]
    ((method, path, body),) = proxy.requests
    assert (method, path) == ("POST", HOOK)
    assert body["channel"] == "deploys"
    assert body["attachments"][0]["author_name"] == "podinfo.test"  # type: ignore[index]


def test_a_provider_without_proxy_does_not_use_anothers(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proxy is per provider: one without spec.proxy goes through the worker's transport
    # (and the environment's proxy, which this machine's must not decide).
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    direct: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        direct.append(request)
        return httpx.Response(200)

    sender = AlertSender(timeout_seconds=5, transport=httpx.MockTransport(receiver))
    with_proxy = AlertTarget(type="generic", url=HOOK, proxy=proxy.url)
    without = AlertTarget(type="generic", url=HOOK)
    sender.send(with_proxy, **POST)  # type: ignore[arg-type]
    sender.send(without, **POST)  # type: ignore[arg-type]
    assert len(proxy.requests) == 1
    assert [str(r.url) for r in direct] == [HOOK]


def test_proxy_failures_never_show_the_proxy_or_the_hook(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    closed = AlertTarget(type="slack", url=HOOK, proxy="http://admin:hunter2@127.0.0.1:1")
    with pytest.raises(NotifierError) as failed:
        AlertSender(timeout_seconds=2).send(closed, **POST)  # type: ignore[arg-type]
    malformed = AlertTarget(type="slack", url=HOOK, proxy="ftp://admin:hunter2@proxy")
    with pytest.raises(InvalidSpec) as refused:
        AlertSender(timeout_seconds=2).send(malformed, **POST)  # type: ignore[arg-type]
    for text in (str(failed.value), str(refused.value), caplog.text):
        assert "hunter2" not in text
        assert "SECRET-HOOK" not in text
    assert "spec.proxy" in str(refused.value)
