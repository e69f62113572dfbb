"""``coalmine controller``: the declarative way, as a Flagger user knows it.

Apply a Canary with kubectl, change its target (``kubectl set image``, Flux, Argo CD, a ConfigMap
edit), and a rollout starts: the controller watches Canaries, their targets and the ConfigMaps and
Secrets those reference, and maps each change to the rollout workflow — update-with-start of the
new revision on the Canary's deterministic workflow ID, the same call ``coalmine rollout start``
makes, so both ways converge on one workflow. It holds no rollout state: the workflow is the state
and writes the Canary's status.

Its own command and Deployment, with its own ServiceAccount, because its permissions differ from
the worker's: it lists and watches (the worker only gets what it converges), and it never changes
a workload (it writes Canaries — finalizers, an annotation, the status of a Canary no workflow runs
for — and Events). Several replicas are safe: every action is idempotent (see ``_actions``).

Modules: ``_decide`` (pure: a Canary and its target → one action), ``_controller`` (watch cache,
work queue), ``_actions`` (Temporal and API writes), ``cli`` (the command).
"""

from __future__ import annotations

from worker.controller._actions import IDENTITY, URL_ANNOTATION, Actions
from worker.controller._controller import Controller, ControllerSettings
from worker.controller._decide import FINALIZER, decide

__all__ = [
    "FINALIZER",
    "IDENTITY",
    "URL_ANNOTATION",
    "Actions",
    "Controller",
    "ControllerSettings",
    "decide",
]
