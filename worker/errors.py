"""Errors of the ``coalmine`` command, each carrying the exit code CI sees.

::

    CliError                      exit 1 unless a subclass says otherwise
    ├── BadInputError             exit 2: bad spec, missing target, bad flag value
    ├── UnreachableError          exit 3: Temporal or the cluster could not be reached
    ├── RolloutNotFoundError      exit 1: no rollout with that name
    └── RequestRefusedError       exit 1: the workflow refused an operator request

The command layer catches ``CliError`` once, prints its message and exits with its code, so the
code deeper down raises meaningful errors instead of calling ``sys.exit``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3


class CliError(Exception):
    """An error the command reports as one clear message and an exit code."""

    exit_code = EXIT_FAILED


class BadInputError(CliError):
    """The input cannot work: nothing was started, nothing in the cluster changed."""

    exit_code = EXIT_BAD_INPUT


class UnreachableError(CliError):
    """Temporal or the Kubernetes API could not be reached."""

    exit_code = EXIT_UNREACHABLE


class RolloutNotFoundError(CliError):
    """No rollout of that target exists."""


class RequestRefusedError(CliError):
    """The rollout refused an operator request (its update validator said no)."""
