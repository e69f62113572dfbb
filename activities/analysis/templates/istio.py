"""Istio's builtin checks, with the PromQL Flagger runs for them.

``request-success-rate``: the percentage of requests to the canary workload that did not answer
5xx, over the metric's interval. ``request-duration``: the 99th percentile of the request duration
in milliseconds. Both read the destination reporter (the canary's own sidecar), and match the
workload with ``=~`` as Flagger does, so a regular expression in the target name keeps working.
The queries are kept as Flagger writes them so dashboards and alert rules built on its numbers
agree with ours; whitespace is irrelevant to PromQL.
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

QUERIES = {
    "request-success-rate": REQUEST_SUCCESS_RATE,
    "request-duration": REQUEST_DURATION,
}
