"""How to query: metric providers behind a two-method Protocol, and the verdict on a value.

- `provider`: the `MetricProvider` Protocol and the factory by type name.
- `prometheus`: `PrometheusProvider` on prometheus-api-client.
- `credentials`: bearer/basic auth and headers from a Secret or the environment.
- `verdict`: a value and a threshold range → `MetricResult` with Flagger's wording.
- `check`: one `MetricSpec` → query → provider → verdict (what `check_metric` runs).
"""
