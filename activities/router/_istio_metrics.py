"""Istio's telemetry as Flagger's builtin checks query it (``pkg/metrics/observers/istio.go``).

The ``istio`` provider's (``gatewayapi`` and ``kubernetes`` read the application's own metrics:
`activities.router._http_metrics`).

``request-success-rate``: the percentage of requests to the canary workload that did not answer
5xx, over the metric's interval. ``request-duration``: their 99th percentile in milliseconds.
Both read the destination reporter (the canary's own sidecar) and match the workload with
``=~`` as Flagger does. Kept as Flagger writes them, so dashboards built on its numbers agree.
"""

from __future__ import annotations

REQUEST_SUCCESS_RATE = """
sum(
  rate(
    istio_requests_total{
      reporter="destination",
      destination_workload_namespace="{{ namespace }}",
      destination_workload=~"{{ target }}",
      response_code!~"5.*"
    }[{{ interval }}]
  )
)
/
sum(
  rate(
    istio_requests_total{
      reporter="destination",
      destination_workload_namespace="{{ namespace }}",
      destination_workload=~"{{ target }}"
    }[{{ interval }}]
  )
)
* 100
"""

REQUEST_DURATION = """
histogram_quantile(
  0.99,
  sum(
    rate(
      istio_request_duration_milliseconds_bucket{
        reporter="destination",
        destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}"
      }[{{ interval }}]
    )
  ) by (le)
)
"""
