"""The demo: the scenario's two rollouts on the local stack, driven exactly as a user would.

Every step is a command a platform engineer types (``kubectl apply``, ``kubectl set env``,
``coalmine rollout start --wait``), run as a process with the stack's environment, so its output
is what a CI log shows. The order follows the scenario:

1. apply podinfo (Deployment and HPA) and the article's Canary with a shorter interval; the first
   ``rollout start`` initializes (primary, Services, VirtualService) and needs no analysis;
2. a new image, 1.4.1, under the load test: promoted step by step to Succeeded;
3. a faulty image, 1.4.2, answering 30% errors with 1.5 s latency: rolled back at the threshold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import httpx
import yaml

from sandbox.stack import Stack

GOOD_IMAGE = "quay.io/stefanprodan/podinfo:1.4.1"
BAD_IMAGE = "quay.io/stefanprodan/podinfo:1.4.2"


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _run(argv: Sequence[str], env: dict[str, str]) -> int:
    print("$ " + " ".join(argv), flush=True)
    return subprocess.run(list(argv), env=env, check=False).returncode


def _coalmine() -> str:
    local = Path(sys.executable).parent / "coalmine"
    return str(local) if local.exists() else (shutil.which("coalmine") or "coalmine")


def users_traffic(stack: Stack, *, seconds: int = 240) -> None:
    """Production traffic to podinfo for the demo's duration, as its users would send it.

    It goes through the sandbox's load tester (flagger-loadtester's API) and the mesh, so the
    canary receives its weight's share from its first step, as in a real cluster.
    """
    cmd = f"hey -z {seconds}s -q 10 -c 2 http://podinfo.test:9898/"
    payload = {
        "name": "users",
        "namespace": "test",
        "phase": "Progressing",
        "metadata": {"cmd": cmd},
    }
    print(f"$ load tester: {cmd}", flush=True)
    with httpx.Client(proxy=stack.sandbox.mesh_url, timeout=10) as http:
        http.post(stack.sandbox.loadtester_url, json=payload).raise_for_status()


def write_canary(path: Path, *, interval: str) -> Path:
    """The article's Canary with the analysis interval shortened for a demo."""
    text = resources.files("sandbox.demo_assets").joinpath("canary.yaml").read_text()
    document = yaml.safe_load(text)
    document["spec"]["canaryAnalysis"]["interval"] = interval
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def run(stack: Stack, *, interval: str = "3s") -> int:
    """Run the demo's rollouts; 0 when the good one was promoted and the bad one rolled back."""
    env = {**os.environ, **stack.env}
    kubectl = ["kubectl", "--kubeconfig", str(stack.sandbox.kubeconfig)]
    workload = resources.files("sandbox.demo_assets").joinpath("podinfo.yaml")
    canary = write_canary(stack.state_dir / "podinfo-canary.yaml", interval=interval)
    start = [_coalmine(), "rollout", "start", "-f", str(canary), "--wait"]

    _say("Deploy podinfo and its HPA in namespace test")
    with resources.as_file(workload) as manifest:
        if _run([*kubectl, "apply", "-f", str(manifest)], env) != 0:
            return 1
    _say("Initialize the Canary: podinfo-primary, Services, VirtualService (no analysis)")
    if _run([*start, "--reason", "demo: initialize"], env) != 0:
        return 1

    _say("Users' traffic to podinfo.test (through the mesh, as in production)")
    users_traffic(stack)
    _say(f"Roll out a new version ({GOOD_IMAGE}): expect Succeeded")
    good = _run([*start, "--image", f"podinfod={GOOD_IMAGE}", "--reason", "demo: good"], env)

    _say(f"Roll out a faulty version ({BAD_IMAGE}, 30% errors, 1.5s latency): expect a rollback")
    fault = ["FAULT_ERROR_RATE=0.3", "FAULT_LATENCY_MS=1500"]
    _run([*kubectl, "-n", "test", "set", "env", "deployment/podinfo", *fault], env)
    bad = _run([*start, "--image", f"podinfod={BAD_IMAGE}", "--reason", "demo: faulty"], env)

    _say("Rollouts of namespace test")
    _run([_coalmine(), "rollout", "list", "-n", "test"], env)
    _print_next_steps(stack)
    if good == 0 and bad == 1:
        print("\ndemo: the good release was promoted and the faulty one rolled back", flush=True)
        return 0
    print(f"\ndemo: unexpected outcome (good exit {good}, faulty exit {bad})", flush=True)
    return 1


def _print_next_steps(stack: Stack) -> None:
    env_file = stack.state_dir / "env"
    print(
        f"""
What to try next (first: . {env_file}):
  Web UI                  {stack.ui_url}/namespaces/default/workflows
  list rollouts           coalmine rollout list -n test
  one rollout's status    coalmine rollout status podinfo -n test -o json
  watch a rollout live    coalmine rollout watch podinfo -n test
  heal the release        kubectl -n test set env deploy/podinfo FAULT_ERROR_RATE- FAULT_LATENCY_MS-
  and roll it out again   coalmine rollout start -f {stack.state_dir / "podinfo-canary.yaml"} --wait
  abort it by hand        coalmine rollout abort podinfo -n test --reason "looks wrong"
  the cluster             kubectl get deploy,svc,virtualservice -n test
  stop everything         coalmine down --state-dir {stack.state_dir}""",
        flush=True,
    )
