"""One metric check: which query, on which backend, and the verdict on its value.

A `MetricSpec` reaches us in one of three forms (the spec normalizes v1alpha3 documents first):

1. ``templateRef``: a Flagger ``MetricTemplate`` read from the cluster, in the reference's
   namespace or the Canary's; its ``spec.provider`` picks the backend, its ``secretRef`` (a Secret
   in the template's namespace) the credentials, its ``spec.query`` is rendered with the template
   variables;
2. the deprecated inline ``query``: run as written on the default Prometheus (Flagger renders
   nothing in it either);
3. a builtin name (``request-success-rate``, ``request-duration``): the router's query template,
   rendered, on the default Prometheus.

The default Prometheus is `AnalysisSettings.prometheus_url`, else ``PROMETHEUS_URL``, with
credentials from the environment. Missing templates, Secrets or addresses are `InvalidSpec`; a
backend that cannot answer is a ``provider error`` verdict, never an exception.

A metric with ``compare`` is also judged against the primary (`compare`): the same query,
rendered for the primary's workload, sampled on the same backend.

The checker keeps one provider per backend (type, address, timeout, TLS setting and
credentials), so every check of every rollout on this worker reuses its client and open
connections; changed credentials (a rotated Secret) make a new provider.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from activities.analysis.metrics import compare
from activities.analysis.metrics import credentials as creds
from activities.analysis.metrics.provider import MetricProvider, provider_for
from activities.analysis.metrics.verdict import bounds_of, judge, no_data, provider_error
from activities.analysis.settings import AnalysisSettings
from activities.analysis.templates import TemplateModel, render
from activities.errors import InvalidSpec, NoData, ProviderError
from activities.kubernetes.resources import METRIC_TEMPLATE, Resources, secret_data
from activities.router.registry import resolve
from workflows.activity_api import CanaryRef, MetricCheckInput
from workflows.model import MetricResult
from workflows.providers import DEFAULT_PROVIDER
from workflows.spec import MetricSpec

MAX_PROVIDERS = 64
"""Backends a worker keeps a client for (the least recently used beyond are dropped)."""


@dataclass(frozen=True)
class _Plan:
    provider: MetricProvider
    provider_type: str
    query: str
    custom: bool


class MetricChecker:
    """Runs `MetricCheckInput`s; one instance serves every rollout of a worker."""

    def __init__(
        self,
        *,
        cluster: Resources,
        settings: AnalysisSettings,
        default_provider: str = DEFAULT_PROVIDER,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._default_provider = default_provider
        self._environ = environ
        self._providers: OrderedDict[str, MetricProvider] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, request: MetricCheckInput) -> MetricResult:
        metric, ref = request.metric, request.ref
        low, high = bounds_of(metric)
        plan = self._plan(metric, ref)
        try:
            value = plan.provider.run_query(plan.query)
        except NoData:
            return no_data(metric.name, low, high, workload=ref.display, custom=plan.custom)
        except ProviderError as exc:
            return provider_error(
                metric.name, low, high, provider=plan.provider_type, detail=str(exc)
            )
        result = judge(metric.name, value, low, high)
        if metric.compare is None:
            return result
        return self._compared(result, metric, ref, plan)

    def _compared(
        self, result: MetricResult, metric: MetricSpec, ref: CanaryRef, plan: _Plan
    ) -> MetricResult:
        assert metric.compare is not None  # checked by the caller
        primary = self._plan(metric, ref, target=ref.primary)
        if primary.query == plan.query:
            raise InvalidSpec(
                f"metric {metric.name!r} compares with the primary, but its query does not "
                "name the workload ({{ target }}): the canary's and the primary's are the same"
            )
        try:
            canary_samples, primary_samples = compare.sample_both(
                plan.provider,
                canary_query=plan.query,
                primary_query=primary.query,
                interval_seconds=metric.interval_seconds,
                options=metric.compare,
            )
        except ProviderError as exc:
            return provider_error(
                metric.name, result.min, result.max, provider=plan.provider_type, detail=str(exc)
            )
        return compare.judged(result, metric, canary_samples, primary_samples)

    # --- which query on which backend -----------------------------------------------------

    def _plan(self, metric: MetricSpec, ref: CanaryRef, *, target: str | None = None) -> _Plan:
        """The query of ``metric`` for the canary's workload, or for ``target``'s."""
        model = TemplateModel(
            name=ref.name,
            namespace=ref.namespace,
            target=target or ref.target,
            service=ref.service,
            interval=metric.interval,
            variables=dict(metric.template_variables),
        )
        if metric.template_ref is not None:
            namespace = metric.template_ref.namespace or ref.namespace
            return self._template_plan(namespace, metric.template_ref.name, model)
        if metric.query:
            return _Plan(self._default_prometheus(), "prometheus", metric.query, custom=True)
        # What a builtin check measures depends on the Canary's traffic router (Flagger's
        # per-mesh observers): the provider travels with the ref, None is the worker's default.
        router = resolve(ref.provider, self._default_provider)
        builtin = router.queries.get(metric.name)
        if builtin is None:
            raise InvalidSpec(
                f"metric {metric.name!r} has neither a templateRef nor a query, and is not a "
                f"builtin {router.name} metric ({', '.join(sorted(router.queries))})"
            )
        return _Plan(self._default_prometheus(), "prometheus", render(builtin, model), False)

    def _template_plan(self, namespace: str, name: str, model: TemplateModel) -> _Plan:
        template = self._cluster.get(METRIC_TEMPLATE, namespace, name)
        if template is None:
            raise InvalidSpec(f"metric template {namespace}/{name} not found")
        spec: dict[str, Any] = template.get("spec") or {}
        provider: dict[str, Any] = spec.get("provider") or {}
        query = spec.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidSpec(f"metric template {namespace}/{name} has no spec.query")
        type_name = str(provider.get("type") or "prometheus")
        address = provider.get("address")
        if not address:
            raise InvalidSpec(f"metric template {namespace}/{name} has no spec.provider.address")
        credentials = creds.Credentials()
        secret_ref = provider.get("secretRef") or {}
        if secret_ref.get("name"):
            secret = f"{namespace}/{secret_ref['name']}"
            data = secret_data(self._cluster, namespace, secret_ref["name"])
            if data is None:
                raise InvalidSpec(f"secret {secret} of metric template not found")
            credentials = creds.from_secret(data, secret=secret)
        backend = self._provider(
            type_name,
            address=str(address),
            credentials=credentials,
            insecure_skip_verify=bool(provider.get("insecureSkipVerify", False)),
        )
        return _Plan(backend, type_name, render(query, model), custom=True)

    def _default_prometheus(self) -> MetricProvider:
        env = os.environ if self._environ is None else self._environ
        url = self._settings.prometheus_url or env.get(creds.ENV_URL)
        if not url:
            raise InvalidSpec(
                f"no default Prometheus: set AnalysisSettings.prometheus_url or {creds.ENV_URL}"
            )
        return self._provider("prometheus", address=url, credentials=creds.from_environment(env))

    def _provider(
        self,
        type_name: str,
        *,
        address: str,
        credentials: creds.Credentials,
        insecure_skip_verify: bool = False,
    ) -> MetricProvider:
        """The kept provider for this backend, built on first use (an unknown type raises)."""
        timeout = self._settings.query_timeout_seconds
        secret = [credentials.token, credentials.username, credentials.password]
        identity = [type_name, address, timeout, insecure_skip_verify, secret]
        identity.append(sorted(credentials.headers.items()))
        # A digest, so the credentials are not also kept as a readable key.
        key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
        with self._lock:
            kept = self._providers.get(key)
            if kept is not None:
                self._providers.move_to_end(key)
                return kept
        built = provider_for(
            type_name,
            address=address,
            credentials=credentials,
            timeout_seconds=timeout,
            insecure_skip_verify=insecure_skip_verify,
        )
        with self._lock:
            kept = self._providers.setdefault(key, built)
            while len(self._providers) > MAX_PROVIDERS:
                # The least recently used; a check still using it finishes, then it is dropped.
                self._providers.popitem(last=False)
        return kept
