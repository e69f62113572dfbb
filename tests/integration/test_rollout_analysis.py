"""Analysis in whole rollouts: the scenario's manual fault injection, and a MetricTemplate.

The scenario's rollback: the new version is healthy, but a tester hits the canary directly with
``/status/500`` and ``/delay/1`` while the load test runs — the canary's success rate and latency
fall in Prometheus and the rollout rolls back at the threshold. Here the tester is the load
tester itself, driven by two more ``rollout`` webhooks, exactly as a Flagger user would add them.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from sandbox.runner import SandboxHandle
from tests.integration.rollout_support import (
    GOOD,
    Scenario,
    api_client,
    canary,
    image,
    production_traffic,
    read_status,
    replicas,
    rollout_worker,
    scenario,
    weights,
)
from workflows.model import Phase, RolloutResult

__all__ = ["api_client", "rollout_worker", "scenario"]  # fixtures used by the tests below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _tester(name: str, ns: str, path: str) -> dict[str, Any]:
    cmd = f"hey -z 1m -q 5 -c 4 http://podinfo-canary.{ns}:9898{path}"
    return {"name": name, "url": "http://flagger-loadtester.test/", "metadata": {"cmd": cmd}}


async def test_tester_hitting_the_canary_with_errors_and_delays_rolls_it_back(
    scenario: Scenario,
    sandbox_cluster: SandboxHandle,
) -> None:
    ns = scenario.ns
    testers = [_tester("tester-500", ns, "/status/500"), _tester("tester-delay", ns, "/delay/1")]
    spec = canary(ns, threshold=3, max_weight=50, extra_webhooks=testers)
    await scenario.initialize(spec)

    production_traffic(sandbox_cluster, ns)
    scenario.release(GOOD)
    handle = await scenario.start(spec)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "failed checks threshold reached 3" in str(failure.value.cause)

    status = await read_status(handle)
    breaches = {c.source: c.message for c in status.failed_check_history}
    assert "request-success-rate" in breaches, breaches
    assert "%" in breaches["request-success-rate"]
    rate = status.metrics["request-success-rate"]
    assert rate.value is not None
    assert rate.value < 99
    # the delays reach the p99 too (milliseconds against the 500 ms bound)
    duration = status.metrics["request-duration"]
    assert duration.value is not None
    assert duration.value > 500
    # rolled back: the healthy primary keeps the old image and all the traffic
    assert weights(scenario.api, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert replicas(scenario.api, ns, "podinfo") == 0
    assert image(scenario.api, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"


METRIC_TEMPLATE = """
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: not-found-percentage, namespace: {ns}}}
spec:
  provider: {{type: prometheus, address: "{prometheus}"}}
  query: |
    100 - sum(rate(istio_requests_total{{reporter="destination",
      destination_workload_namespace="{{{{ namespace }}}}",destination_workload="{{{{ target }}}}",
      response_code!="{{{{ variables.code }}}}"}}[{{{{ interval }}}}]))
    / sum(rate(istio_requests_total{{reporter="destination",
      destination_workload_namespace="{{{{ namespace }}}}",
      destination_workload="{{{{ target }}}}"}}[{{{{ interval }}}}])) * 100
"""


async def test_metric_template_with_variables_guards_the_rollout(
    scenario: Scenario,
    sandbox_cluster: SandboxHandle,
) -> None:
    ns = scenario.ns
    scenario.kubectl.apply(METRIC_TEMPLATE.format(ns=ns, prometheus=sandbox_cluster.prometheus_url))
    custom = {
        "name": "404s percentage",
        "templateRef": {"name": "not-found-percentage"},
        "templateVariables": {"code": "404"},
        "thresholdRange": {"max": 5},
        "interval": "10s",
    }
    spec = canary(ns, metrics=[custom])
    await scenario.initialize(spec)

    production_traffic(sandbox_cluster, ns)
    scenario.release(GOOD)
    handle = await scenario.start(spec)
    result: RolloutResult = await handle.result()
    assert result.phase == Phase.SUCCEEDED

    status = await read_status(handle)
    checked = status.metrics["404s percentage"]
    # the template's variables and the canary's names were filled in: a real value, no 404s
    assert checked.value == pytest.approx(0.0, abs=0.01)
    assert checked.max == 5
    assert status.failed_checks == 0
    assert image(scenario.api, ns, "podinfo-primary") == GOOD
