"""Named retry policies and timeouts, one per kind of activity.

Temporal owns retries (the activities turn their client libraries' retries off), so every call the
workflow makes names one of these. The typed errors an activity raises for what a retry cannot fix
(``ApplicationError(type=...)``) are listed here as non-retryable, so the rollout fails at once with
a clear reason instead of retrying for minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

TARGET_NOT_FOUND = "TargetNotFound"
"""``ApplicationError.type`` when the target Deployment (or another named object) is missing."""

INVALID_SPEC = "InvalidSpec"
"""``ApplicationError.type`` when the cluster refuses what the Canary asks for."""

NON_RETRYABLE = [
    TARGET_NOT_FOUND,
    INVALID_SPEC,
    # the other types activities/errors.py raises as non-retryable, so no policy retries them
    "PrimaryNotFound",
    "RevisionMismatch",
    "ConfigurationError",
]


@dataclass(frozen=True, kw_only=True)
class ActivityOptions:
    """A timeout and a retry policy: what every activity call carries."""

    start_to_close: timedelta
    retry: RetryPolicy
    heartbeat: timedelta | None = None
    schedule_to_close: timedelta | None = None
    """The bound over every attempt together (None: attempts bound it)."""


KUBERNETES_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=NON_RETRYABLE,
)
"""Reads and patches of Kubernetes objects: idempotent, so retried with backoff for ~4 minutes."""

KUBERNETES = ActivityOptions(start_to_close=timedelta(seconds=60), retry=KUBERNETES_RETRY)

COMPENSATION = ActivityOptions(
    start_to_close=timedelta(seconds=60),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        # A rollback must land: retried for about half an hour before the workflow gives up.
        maximum_attempts=60,
        non_retryable_error_types=NON_RETRYABLE,
    ),
)
"""The undo steps of a rollback (traffic to the primary, canary to zero): retried much longer."""

WAIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(seconds=30),
    # Unlimited: the wait ends by the deadline's rules, and `WAIT_LIMIT` bounds all attempts. A
    # worker too busy to send a heartbeat in time (2,000 rollouts starting at once) loses an
    # attempt, never the rollout; three attempts used to fail one in fifty of those.
    maximum_attempts=0,
    non_retryable_error_types=NON_RETRYABLE,
)

WAIT_MARGIN = timedelta(seconds=30)
"""Time a wait activity gets past its deadline to report 'not ready' before Temporal times out."""

WAIT_HEARTBEAT = timedelta(seconds=5)
"""wait_ready heartbeats every poll (0.5 s): a dead worker's wait is retried within seconds."""


WAIT_LIMIT = timedelta(hours=1)
"""The longest a wait lasts when the progress deadline never comes due (a Deployment whose
controller never sees its spec; Flagger would retry it forever): then it reports not ready."""


def wait_ready(deadline_seconds: float) -> ActivityOptions:
    """Waiting for a Deployment: as long as Flagger's deadline rules allow (the activity ends the
    wait; `WAIT_LIMIT` at most, over all attempts), heartbeating while it waits. Timeouts and
    retry policies are not part of what a replay compares, so runs recorded with the old ones
    (the deadline plus a margin, three attempts) replay unchanged."""
    limit = max(timedelta(seconds=deadline_seconds) + WAIT_MARGIN, WAIT_LIMIT)
    return ActivityOptions(
        start_to_close=limit,
        retry=WAIT_RETRY,
        heartbeat=WAIT_HEARTBEAT,
        schedule_to_close=limit + WAIT_MARGIN,
    )


ANALYSIS = ActivityOptions(
    start_to_close=timedelta(seconds=60),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=3,
    ),
)
"""Metric queries: a few quick attempts; a backend still down is a failed check, not a crash."""


STEP_HEARTBEAT = timedelta(seconds=5)
"""Heartbeat timeout of the one-activity step: a dead worker's step is retried this soon."""


def analyse_step(webhooks: list[tuple[float, int]]) -> ActivityOptions:
    """Every check of a step in one call: each webhook's timeout times its attempts (with the
    backoff between them), then the metric queries (a minute, as ``ANALYSIS``), heartbeating."""
    seconds = 60.0
    for timeout, retries in webhooks:
        seconds += (timeout + 5) * (retries + 1) + sum(min(2**n, 8) for n in range(retries))
    return ActivityOptions(
        start_to_close=timedelta(seconds=seconds),
        retry=RetryPolicy(
            initial_interval=timedelta(seconds=1),
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=3,
            non_retryable_error_types=NON_RETRYABLE,
        ),
        heartbeat=STEP_HEARTBEAT,
    )


def webhook(*, timeout_seconds: float, retries: int) -> ActivityOptions:
    """A webhook call: its timeout plus a margin; the spec's ``retries`` as extra attempts."""
    return ActivityOptions(
        start_to_close=timedelta(seconds=timeout_seconds + 5),
        retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=retries + 1),
    )


EVENTS = ActivityOptions(
    start_to_close=timedelta(seconds=15),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=5),
        maximum_attempts=3,
    ),
)
"""Events and alerts (a local activity): short; a notifier that is down never holds a rollout."""
