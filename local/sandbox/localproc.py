"""Background processes on this machine, tracked by pid files: start detached, check, stop.

Used by the local stack (``coalmine up|down``) for the Temporal dev server and the worker. A pid
is trusted only while ``/proc/<pid>/cmdline`` still names the program it was recorded for, since
pids are reused after a process exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def read_pid(path: Path) -> int | None:
    """The pid recorded in ``path``, or None when there is no readable one."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int, marker: str = "") -> bool:
    """Whether ``pid`` runs (not a zombie) and its command line contains ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return marker in cmdline and not zombie


def running(pid_file: Path, marker: str) -> int | None:
    """The pid of the process ``pid_file`` records, when it still runs; else None."""
    pid = read_pid(pid_file)
    return pid if pid is not None and alive(pid, marker) else None


def spawn(
    argv: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` in its own session (it outlives this command), output to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    # The child is deliberately not waited for: it is a background service. Dropping the Popen
    # object without a warning needs its returncode set; the process keeps running regardless.
    process.returncode = 0
    return process.pid


def stop(pid_file: Path, marker: str, *, grace: float = 10.0) -> int | None:
    """SIGTERM the recorded process, SIGKILL it after ``grace`` seconds; remove the pid file."""
    pid = running(pid_file, marker)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(pid):
            _reap(pid)
            time.sleep(0.05)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    return pid


def _reap(pid: int) -> None:
    # Only a child of this process can be reaped; for others this is a no-op.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
