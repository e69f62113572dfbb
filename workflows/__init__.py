"""Coalmine's workflow layer: the canary rollout as a deterministic Temporal workflow.

The public surface, by module:

- ``workflows.rollout`` — ``CanaryRolloutWorkflow``;
- ``workflows.model`` — its name, input/result/status models, the operator requests its updates
  and signals take, ``workflow_id``;
- ``workflows.search`` — the search attributes it upserts;
- ``workflows.spec`` — the Canary spec, ``parse_canary`` and ``SpecError``;
- ``workflows.activity_api`` — the contract with the activities.

Everything else (``_``-prefixed modules) is private to the workflow.

This file deliberately imports nothing: Temporal's sandbox runs this package's ``__init__`` for
every workflow run, and a model imported here would be a sandbox copy, different from the
worker's copy that payloads are decoded into (pydantic then refuses one as the other).
"""
