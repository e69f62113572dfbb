"""Who is asking: recorded with every rollout start and operator action.

In CI the job is the actor (``github:owner/repo#run_id``, ``gitlab:group/project#job_id``), so a
promotion in the history points to the pipeline run that made it; at a terminal it is
``user@host``.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping


def default_identity(env: Mapping[str, str] | None = None) -> str:
    """The CI job identity when running in CI, else ``$USER@$HOSTNAME``."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        repo = env.get("GITHUB_REPOSITORY", "unknown")
        run = env.get("GITHUB_RUN_ID", "unknown")
        return f"github:{repo}#{run}"
    if env.get("GITLAB_CI") == "true":
        project = env.get("CI_PROJECT_PATH", "unknown")
        job = env.get("CI_JOB_ID") or env.get("CI_PIPELINE_ID", "unknown")
        return f"gitlab:{project}#{job}"
    user = env.get("USER") or env.get("USERNAME") or _login()
    host = env.get("HOSTNAME") or socket.gethostname() or "localhost"
    return f"{user}@{host}"


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers running as a bare uid)
        return "unknown"
