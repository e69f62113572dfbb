"""Activities: the only code that talks to the outside world, one package per external system.

- `activities.kubernetes` — the target Deployment, its ``-primary`` copy, HPA, Services and
  config copies (`KubernetesActivities`), and the client builder (`build_api_client`).
- `activities.router` — traffic routers behind the `TrafficRouter` Protocol (Istio first) and
  `RouterActivities`.
- `activities.analysis` — metric checks, webhooks, events and alerts.
- `activities.errors` — our own Kubernetes API errors and the typed, non-retryable rollout
  failures.

Every activity implements a name and payload of `workflows.activity_api`, gets its clients
injected by the worker (no globals), and is idempotent — it reads, then converges — so a retry
or a replay after a crash does no harm. Temporal owns retries; client libraries are built with
theirs turned off. This layer may import `workflows`, never `worker` or `sandbox`.
"""
