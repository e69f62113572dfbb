"""Recording an event: a Kubernetes Event on the Canary, ``event`` webhooks, and alerts.

Order and failure policy, chosen so a retry does no harm and a chat outage never stops a release:

1. The core/v1 Event is written first, on the Canary as Flagger writes it (``kubectl describe
   canary`` lists it), or on the target Deployment when the Canary is not in the cluster (a
   rollout started from CI with a file); if the API server fails, the
   activity raises and Temporal retries it (nothing else has been sent yet, so nothing is sent
   twice). Repeats of the same event are aggregated as Kubernetes' event correlator does: the
   Event's name is derived from (object, type, reason, message), so a repeat finds it and bumps
   ``count`` and ``lastTimestamp`` instead of adding a new object. A retry after a write whose
   answer was lost bumps the count once more: a count off by one beats a lost event. (Unlike the
   Kubernetes correlator, events that differ only in message are not merged.) The worker
   remembers the Events it wrote, so a new event is one create and a remembered repeat one
   patch, with no read first (`EventRecorder.write_kubernetes_event`).
2. Every ``event`` webhook gets Flagger's payload with the message in ``metadata``.
3. When the event carries an alert severity, every alert whose ``severity`` admits it is posted
   through its ``AlertProvider``: info alerts receive everything, warn alerts warn and error,
   error alerts only errors (Flagger's rule).

Steps 2 and 3 swallow every failure (receiver down, unknown provider type, missing Secret) and log
it without the URL, proxy or token. Provider URLs come from the ``AlertProvider``'s ``address`` or
its Secret's ``address`` key, read here (see `activities.analysis.alerts`, which also sends each
alert through the provider's ``spec.proxy``); they never enter workflow history.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from activities.analysis.alerts import AlertSender, read_target
from activities.analysis.notifiers import Field
from activities.analysis.settings import AnalysisSettings
from activities.analysis.webhooks import WebhookCaller, event_metadata, payload
from activities.errors import (
    AlreadyExists,
    AnalysisError,
    Conflict,
    InvalidSpec,
    KubernetesError,
    NotFound,
)
from activities.kubernetes.last_writes import LastWrites
from activities.kubernetes.resources import (
    ALERT_PROVIDER,
    CANARY,
    DEPLOYMENT,
    EVENT,
    Obj,
    Resources,
    secret_data,
)
from workflows.activity_api import EventInput
from workflows.spec import AlertSpec

log = logging.getLogger(__name__)

SEVERITY_RANK = {"info": 0, "warn": 1, "error": 2}

REMEMBERED_EVENTS = 4096
"""Events whose last write a worker remembers (the least recently written beyond)."""


def should_alert(alert_severity: str, event_severity: str) -> bool:
    """Whether an alert configured at ``alert_severity`` receives an ``event_severity`` event."""
    return SEVERITY_RANK[event_severity] >= SEVERITY_RANK[alert_severity]


def event_name(event: EventInput, component: str) -> str:
    """A stable name per distinct event, so repeats aggregate into one object."""
    key = "\x00".join(
        (component, event.ref.namespace, event.ref.target, event.type, event.reason, event.message)
    )
    return f"{event.ref.target}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def alert_fields(event: EventInput) -> list[Field]:
    fields = [
        Field("Target", f"Deployment/{event.ref.target}.{event.ref.namespace}"),
        Field("Phase", event.phase.value),
        Field("Canary weight", str(event.weight)),
    ]
    if event.revision:
        fields.append(Field("Revision", event.revision))
    return fields


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Runs `EventInput`s; `transport` is the HTTP seam for tests."""

    def __init__(
        self,
        *,
        cluster: Resources,
        settings: AnalysisSettings,
        webhooks: WebhookCaller,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._webhooks = webhooks
        self._alerts = AlertSender(
            timeout_seconds=settings.notifier_timeout_seconds,
            default_proxy=settings.http_proxy,
            transport=transport,
        )
        self._clock = clock
        self._written = LastWrites(REMEMBERED_EVENTS)

    def record(self, event: EventInput, *, canary_uid: str | None = None) -> None:
        """``canary_uid``: the Canary's ``metadata.uid`` when the caller has just read it (the
        Canary is then not read again); None reads it."""
        self.write_kubernetes_event(event, canary_uid=canary_uid)
        self._send_event_webhooks(event)
        if event.alert_severity is not None:
            self._send_alerts(event, event.alert_severity)

    # --- 1. Kubernetes ---------------------------------------------------------------------

    def write_kubernetes_event(self, event: EventInput, *, canary_uid: str | None = None) -> None:
        """Create the Event, or bump the count of an identical one (raises on API failure).

        As client-go's event recorder (Flagger's) does, the worker remembers the Events it
        wrote: a repeat it remembers is one patch of the count, guarded by the
        ``resourceVersion`` its last write left (a conflict, another writer's bump, starts
        again from a read); an Event it does not remember is created at once, and only when it
        exists already (a repeat from before this worker started) is it read and bumped."""
        namespace = event.ref.namespace
        name = event_name(event, self._settings.event_component)
        now = _timestamp(self._clock())
        key = (namespace, name)
        kept = self._written.get(key)
        if kept is not None:
            try:
                self._bump(key, kept, now, guarded=True)
                return
            except (Conflict, NotFound):
                self._forget(key)
        try:
            body = self._new_event(event, name, now, canary_uid)
            self._remember(key, self._cluster.create(EVENT, namespace, body))
            return
        except AlreadyExists:
            # Written before (by an earlier worker, or an attempt whose answer was lost).
            existing = self._cluster.get(EVENT, namespace, name) or {}
        self._bump(key, existing, now, guarded=False)

    def _bump(self, key: tuple[str, str], existing: Obj, now: str, *, guarded: bool) -> None:
        patch: Obj = {"count": int(existing.get("count") or 1) + 1, "lastTimestamp": now}
        if guarded:
            version = (existing.get("metadata") or {}).get("resourceVersion")
            patch["metadata"] = {"resourceVersion": version}
        self._remember(key, self._cluster.patch(EVENT, key[0], key[1], patch))

    def _remember(self, key: tuple[str, str], written: Obj) -> None:
        version = (written.get("metadata") or {}).get("resourceVersion")
        if not version:
            return
        kept = {"count": written.get("count"), "metadata": {"resourceVersion": version}}
        self._written.put(key, kept)

    def _forget(self, key: tuple[str, str]) -> None:
        self._written.forget(key)

    def _new_event(
        self, event: EventInput, name: str, now: str, canary_uid: str | None
    ) -> dict[str, Any]:
        ref = event.ref
        involved = self._involved_object(event, canary_uid)
        component = self._settings.event_component
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": involved,
            "reason": event.reason,
            "message": event.message,
            "type": event.type,
            "source": {"component": component},
            "reportingComponent": component,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
        }

    def _involved_object(self, event: EventInput, canary_uid: str | None) -> dict[str, Any]:
        """The Canary when it is in the cluster (as Flagger records), else the target."""
        ref = event.ref
        if canary_uid is None:
            canary_uid = _uid(self._cluster.get(CANARY, ref.namespace, ref.name))
        if canary_uid:
            return {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "Canary",
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": canary_uid,
            }
        involved: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": ref.target,
            "namespace": ref.namespace,
        }
        uid = _uid(self._cluster.get(DEPLOYMENT, ref.namespace, ref.target))
        if uid:
            involved["uid"] = uid
        return involved

    # --- 2. event webhooks -----------------------------------------------------------------

    def _send_event_webhooks(self, event: EventInput) -> None:
        for hook in event.event_webhooks:
            metadata = event_metadata(event.message, event.type, hook.metadata, self._clock())
            body = payload(event.ref, event.phase, event.revision, metadata)
            try:
                # One attempt, as Flagger sends events: a retry would repeat the event.
                result, _ = self._webhooks.post(
                    event.ref, hook, body, timeout=self._settings.event_webhook_timeout_seconds
                )
            except (AnalysisError, KubernetesError, InvalidSpec) as exc:
                log.warning("event webhook %s for %s failed: %s", hook.name, event.ref.display, exc)
                continue
            except Exception as exc:
                # Best effort by design: nothing an event webhook does may fail the event.
                log.warning(
                    "event webhook %s for %s failed: %s",
                    hook.name,
                    event.ref.display,
                    type(exc).__name__,
                )
                continue
            if not result.ok:
                log.warning(
                    "event webhook %s for %s failed: %s",
                    hook.name,
                    event.ref.display,
                    result.message,
                )

    # --- 3. alerts -------------------------------------------------------------------------

    def _send_alerts(self, event: EventInput, severity: str) -> None:
        wanted = [a for a in event.alerts if should_alert(a.severity, severity)]
        for alert in wanted:
            try:
                self._send_alert(event, alert, severity)
            except (AnalysisError, KubernetesError, InvalidSpec) as exc:
                # Never the URL or the proxy: the message names the alert and the reason only.
                log.warning("alert %s for %s not sent: %s", alert.name, event.ref.display, exc)
            except Exception as exc:
                # Anything else (a malformed URL from a Secret…): the type only, as its
                # message may quote the URL.
                log.warning(
                    "alert %s for %s not sent: %s",
                    alert.name,
                    event.ref.display,
                    type(exc).__name__,
                )

    def _send_alert(self, event: EventInput, alert: AlertSpec, severity: str) -> None:
        namespace = alert.provider_ref.namespace or event.ref.namespace
        name = alert.provider_ref.name
        provider = self._cluster.get(ALERT_PROVIDER, namespace, name)
        if provider is None:
            raise InvalidSpec(f"alertproviders {namespace}/{name} not found")
        target = read_target(provider, lambda secret: secret_data(self._cluster, namespace, secret))
        if target is None:
            log.warning(
                "alert provider %s/%s has no address: alert %s skipped", namespace, name, alert.name
            )
            return
        self._alerts.send(
            target,
            workload=event.ref.name,
            namespace=event.ref.namespace,
            message=event.message,
            fields=alert_fields(event),
            severity=severity,
        )


def _uid(obj: dict[str, Any] | None) -> str | None:
    uid = ((obj or {}).get("metadata") or {}).get("uid")
    return str(uid) if uid else None
