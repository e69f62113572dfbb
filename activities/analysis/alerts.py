"""Alerts: where an ``AlertProvider`` sends, and the HTTP client that reaches it.

Read as Flagger reads it (``pkg/controller/events.go``, ``alert``): the hook URL is
``spec.address``, or the ``address`` key of ``spec.secretRef``'s Secret when one is named (its
optional ``token`` key is Slack's bearer token); the username and channel are passed as given
(the notifiers default them to Flagger's ``flagger`` and ``general``); and
``spec.proxy``, when set, is the HTTP(S) proxy of that provider's requests and of no other
(Flagger's ``postMessage`` builds a transport with ``http.ProxyURL`` for it). Without it the
worker's own proxy setting applies (``AnalysisSettings.http_proxy``, else the environment's).

The URL and the proxy are both secrets (a hook URL authorizes posting; a proxy address may carry
a password), so `AlertTarget` keeps them out of ``repr`` and no message here quotes them.

An error alert (a rollback and its reason, a failed canary, a failing post-rollout hook) also
says how to see why: a ``Report`` field with the ``coalmine rollout report`` command for that
rollout. It names the Canary and its namespace only, nothing secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from activities.analysis.notifiers import Field, notifier_for
from activities.analysis.webhooks import tls_context
from activities.errors import InvalidSpec

__all__ = ["AlertSender", "AlertTarget", "read_target", "report_command", "with_report"]


REPORT_SEVERITY = "error"
"""Alerts of this severity carry the report command (a rollback is always one)."""


def report_command(name: str, namespace: str, cluster: str = "default") -> str:
    """``coalmine rollout report NAME -n NS`` (``--cluster`` only when not the default)."""
    command = f"coalmine rollout report {name} -n {namespace}"
    if cluster != "default":
        command += f" --cluster {cluster}"
    return command


def with_report(
    fields: list[Field], *, workload: str, namespace: str, severity: str
) -> list[Field]:
    """The alert's fields, plus the command that draws the rollout for an error alert."""
    if severity != REPORT_SEVERITY or any(f.name == "Report" for f in fields):
        return fields
    command = report_command(workload, namespace) + " -o report.html"
    return [*fields, Field("Report", command)]


@dataclass(frozen=True)
class AlertTarget:
    """One AlertProvider's destination, as read for one alert."""

    type: str
    url: str = field(repr=False)
    username: str = ""
    channel: str = ""
    proxy: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def read_target(
    provider: Mapping[str, Any], secret_data: Callable[[str], Mapping[str, str] | None]
) -> AlertTarget | None:
    """The destination of an ``AlertProvider`` object; None when it has no address.

    ``secret_data(secret_name)`` reads a Secret of the provider's namespace (None: none such).
    """
    spec: Mapping[str, Any] = provider.get("spec") or {}
    url = str(spec.get("address") or "")
    token: str | None = None
    secret_name = (spec.get("secretRef") or {}).get("name")
    if secret_name:
        data = secret_data(secret_name)
        if data is None:
            raise InvalidSpec(
                f"the AlertProvider's spec.secretRef names secret {secret_name}, which does not "
                "exist: create it with an address key (and token for Slack)"
            )
        if "address" not in data:
            raise InvalidSpec(
                f"secret {secret_name} has no key 'address': put the hook URL under address"
            )
        url, token = data["address"], data.get("token") or None
    if not url:
        return None
    return AlertTarget(
        type=str(spec.get("type") or ""),
        url=url,
        username=str(spec.get("username") or ""),
        channel=str(spec.get("channel") or ""),
        proxy=str(spec["proxy"]) if spec.get("proxy") else None,
        token=token,
    )


class AlertSender:
    """Posts alerts, each through its provider's proxy; `transport` is the HTTP seam for tests
    (used for providers without a proxy of their own)."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        default_proxy: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        self._default_proxy = default_proxy
        self._transport = transport

    def _client(self, target: AlertTarget) -> httpx.Client:
        if target.proxy is None:
            return httpx.Client(
                timeout=self._timeout,
                follow_redirects=False,
                transport=self._transport,
                proxy=self._default_proxy,
                verify=tls_context(),
            )
        try:
            # The provider's own proxy, and nothing from the environment: as Flagger does.
            return httpx.Client(
                timeout=self._timeout,
                follow_redirects=False,
                proxy=target.proxy,
                trust_env=False,
                verify=tls_context(),
            )
        except (ValueError, TypeError, httpx.InvalidURL):
            # Never the value: a proxy address may carry a password.
            raise InvalidSpec(
                "the AlertProvider's spec.proxy is not a valid proxy address: write it as "
                "http://<host>:<port> (or https://…)"
            ) from None

    def send(
        self,
        target: AlertTarget,
        *,
        workload: str,
        namespace: str,
        message: str,
        fields: list[Field],
        severity: str,
    ) -> None:
        """Post one alert; raises `InvalidSpec` or `NotifierError`, neither quoting a secret."""
        with self._client(target) as client:
            notifier = notifier_for(
                target.type,
                url=target.url,
                username=target.username,
                channel=target.channel,
                client=client,
                token=target.token,
            )
            notifier.post(
                workload=workload,
                namespace=namespace,
                message=message,
                fields=with_report(
                    fields, workload=workload, namespace=namespace, severity=severity
                ),
                severity=severity,
            )
