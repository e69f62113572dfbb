"""Activities run directly (``ActivityEnvironment``) with the timeouts the workflow gives them.

The SDK's test environment says every activity has 1 s to run (start-to-close and
schedule-to-close): an activity that reads its own time budget from its info, as ``wait_ready``
does, would stop after a second. Tests of such activities run them in `activity_env`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from temporalio.testing import ActivityEnvironment

from workflows import policies


def activity_env(options: policies.ActivityOptions | None = None) -> ActivityEnvironment:
    """An environment whose activity info carries ``options``' timeouts (default: a wait's, as
    ``policies.wait_ready`` gives them), scheduled now."""
    options = options or policies.wait_ready(60)
    env = ActivityEnvironment()
    now = datetime.now(UTC)
    env.info = dataclasses.replace(
        env.info,
        start_to_close_timeout=options.start_to_close,
        schedule_to_close_timeout=options.schedule_to_close,
        heartbeat_timeout=options.heartbeat,
        scheduled_time=now,
        current_attempt_scheduled_time=now,
        started_time=now,
    )
    return env
