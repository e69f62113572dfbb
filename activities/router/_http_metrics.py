"""The application's own HTTP metrics as Flagger's builtin checks query them for the ``kubernetes``
and ``gatewayapi`` providers (``pkg/metrics/observers/http.go``: its factory gives both the HTTP
observer, whatever data plane implements the Gateway).

They read the histogram the application exports itself — podinfo's
``http_request_duration_seconds`` with its ``status`` label — from pods Prometheus scrapes by their
``prometheus.io/*`` annotations, labelled ``kubernetes_namespace`` and ``kubernetes_pod_name`` by
that scrape job's relabelling (Flagger's own Prometheus), and select the canary's pods by name:
``<target>-<replicaset hash>-<pod suffix>``, which leaves out ``<target>-primary-…``.

``request-success-rate``: the percentage of the canary pods' requests that did not answer 5xx,
over the metric's interval. ``request-duration``: their 99th percentile, in milliseconds —
Flagger converts the seconds to milliseconds after the query; here the query does (``* 1000``),
so a threshold written for Flagger (``max: 500``) reads the same.
"""

from __future__ import annotations

_POD = "{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"

REQUEST_SUCCESS_RATE = f"""
sum(
  rate(
    http_request_duration_seconds_count{{
      kubernetes_namespace="{{{{ namespace }}}}",
      kubernetes_pod_name=~"{_POD}",
      status!~"5.*"
    }}[{{{{ interval }}}}]
  )
)
/
sum(
  rate(
    http_request_duration_seconds_count{{
      kubernetes_namespace="{{{{ namespace }}}}",
      kubernetes_pod_name=~"{_POD}"
    }}[{{{{ interval }}}}]
  )
)
* 100
"""

REQUEST_DURATION = f"""
histogram_quantile(
  0.99,
  sum(
    rate(
      http_request_duration_seconds_bucket{{
        kubernetes_namespace="{{{{ namespace }}}}",
        kubernetes_pod_name=~"{_POD}"
      }}[{{{{ interval }}}}]
    )
  ) by (le)
)
* 1000
"""
