"""Who asks: the CI job in CI, user@host at a terminal."""

from __future__ import annotations

from worker.identity import default_identity


def test_github_actions_job() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "42"}
    assert default_identity(env) == "github:acme/shop#42"


def test_gitlab_ci_job() -> None:
    env = {"GITLAB_CI": "true", "CI_PROJECT_PATH": "acme/shop", "CI_JOB_ID": "7"}
    assert default_identity(env) == "gitlab:acme/shop#7"


def test_user_at_host() -> None:
    assert default_identity({"USER": "ana", "HOSTNAME": "laptop"}) == "ana@laptop"


def test_user_at_host_without_variables() -> None:
    identity = default_identity({})
    user, _, host = identity.partition("@")
    assert user
    assert host
