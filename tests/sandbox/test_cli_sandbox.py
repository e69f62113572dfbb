"""``coalmine sandbox up|status|down`` as processes, and a shell that sources the env file.

The sandbox process runs the control plane (etcd, kube-apiserver, controller-manager, scheduler,
kwok) as its children: stopping it, or killing its owner, must leave none of them behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
COALMINE = str(VENV_BIN / "coalmine")
CONTROL_PLANE = {"etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok"}  # comm

PODINFO = """
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: test}
spec:
  replicas: 1
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.1
        ports: [{name: http, containerPort: 9898}]
---
apiVersion: v1
kind: Service
metadata: {name: podinfo, namespace: test}
spec:
  selector: {app: podinfo}
  ports: [{name: http, port: 9898, targetPort: http}]
"""


def coalmine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # ~15 s on a quiet machine; the suite's three processes may slow a start several-fold.
        [COALMINE, *args],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def control_plane(pid: int) -> list[int]:
    """The control plane's processes under ``pid`` (its children and theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            todo.append(child)
            try:
                name = Path(f"/proc/{child}/comm").read_text().strip()
            except OSError:
                continue
            if name in CONTROL_PLANE:
                found.append(child)
    return found


# Five `coalmine` processes (each imports the whole CLI) and a sandbox start: slow when busy.
@pytest.mark.timeout(420)
def test_up_env_curl_down(tmp_path):
    state = tmp_path / "sandbox"
    first = coalmine("sandbox", "up", "--state-dir", str(state), "--pod-ready-delay", "0.2")
    assert first.returncode == 0, first.stderr + first.stdout
    pid = int((state / "sandbox.pid").read_text())
    prometheus_pid = int((state / "prometheus.pid").read_text())
    components = control_plane(pid)
    try:
        assert len(components) == len(CONTROL_PLANE), components
        assert "kubeconfig" in first.stdout
        assert "PROMETHEUS_URL" in (state / "env").read_text()
        # Up again while up: harmless, same process.
        again = coalmine("sandbox", "up", "--state-dir", str(state))
        assert again.returncode == 0
        assert "already running" in again.stdout
        assert int((state / "sandbox.pid").read_text()) == pid
        status = coalmine("sandbox", "status", "--state-dir", str(state))
        assert status.returncode == 0
        assert json.loads((state / "sandbox.json").read_text())["ready"] is True

        (tmp_path / "podinfo.yaml").write_text(PODINFO)
        script = (
            f". {state}/env && kubectl apply -f {tmp_path}/podinfo.yaml >/dev/null && "
            "kubectl -n test rollout status deployment/podinfo --timeout=30s >/dev/null && "
            "sleep 0.3 && "
            'curl -sf -x "$HTTP_PROXY" http://podinfo.test:9898/version && '
            "curl -sf http://podinfo.test:9898/healthz && "
            'curl -sf "$PROMETHEUS_URL/api/v1/query?query=up" >/dev/null && echo prometheus-ok'
        )
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "kubeconfig")}
        # The kubectl `make setup` installs (the API server's minor) first on the PATH.
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        shell = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False
        )
        assert shell.returncode == 0, shell.stderr + shell.stdout
        assert '"version": "1.4.1"' in shell.stdout
        assert '"status": "OK"' in shell.stdout
        assert "prometheus-ok" in shell.stdout
    finally:
        down = coalmine("sandbox", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not alive(pid)
    assert not alive(prometheus_pid)
    assert not [p for p in components if alive(p)]
    assert not (state / "sandbox.pid").exists()
    assert coalmine("sandbox", "status", "--state-dir", str(state)).returncode != 0


def test_a_killed_owner_takes_its_sandbox_along(tmp_path):
    state = tmp_path / "owned"
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from sandbox.runner import start_sandbox\n"
        f"with start_sandbox(Path({str(state)!r})) as handle:\n"
        "    print(handle.pid, flush=True)\n"
        "    time.sleep(120)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        prometheus_pid = int((state / "prometheus.pid").read_text())
        components = control_plane(pid)
        assert alive(pid)
        assert len(components) == len(CONTROL_PLANE), components
    finally:
        owner.kill()  # no teardown runs: the sandbox must notice on its own
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 20
    while any(alive(p) for p in (pid, prometheus_pid, *components)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not alive(pid)
    assert not alive(prometheus_pid)
    assert not [p for p in components if alive(p)]
    assert "is gone: stopping" in (state / "sandbox.log").read_text()
