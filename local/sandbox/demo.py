"""The demo: the article's story on the local stack, driven exactly as a user would drive it.

Every step is a command a platform engineer types, run as a process with the stack's
environment, so its output is what a terminal or a CI log shows. The order follows the article:

1. the cluster as the article has it (``istio-system`` with Prometheus and the public gateway,
   the load tester in ``test``); podinfo and its HPA applied;
2. the article's Canary applied with ``kubectl``: the controller initializes it (primary,
   Services, VirtualService) and ``kubectl get canaries`` shows it ``Initialized``;
3. ``kubectl set image`` to 1.4.1: the controller starts the rollout, ``coalmine rollout watch``
   follows it step by step to Succeeded;
4. a faulty release (1.4.2 answering 30% errors with 1.5 s latency) in one ``kubectl patch``:
   rolled back when the failed checks reach the threshold;
5. the CI path: the config fixed with ``kubectl set env``, and a CI job ships 1.4.3 with
   ``coalmine rollout start --wait``, which joins the rollout the controller started for the fix
   (one workflow per Canary) and exits 0 when it is promoted.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import httpx
import yaml

from sandbox.stack import Stack

GOOD_IMAGE = "quay.io/stefanprodan/podinfo:1.4.1"
BAD_IMAGE = "quay.io/stefanprodan/podinfo:1.4.2"
CI_IMAGE = "quay.io/stefanprodan/podinfo:1.4.3"
FAULTS = {"FAULT_ERROR_RATE": "0.3", "FAULT_LATENCY_MS": "1500"}


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _run(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run a command as the user would type it (``kubectl``, ``coalmine``: this venv's)."""
    print("$ " + shlex.join(argv), flush=True)
    return subprocess.run([_bin(argv[0]), *argv[1:]], env=env, check=False).returncode


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


METRIC_WINDOW = "10s"
"""The metrics' query window in the demo (the article's 30s, shortened as the interval is; the
sandbox's Prometheus scrapes every second, so 10 s holds ten samples)."""


def write_canary(path: Path, *, interval: str) -> Path:
    """The article's Canary with the analysis interval and metric windows shortened."""
    text = resources.files("sandbox.demo_assets").joinpath("canary.yaml").read_text()
    document = yaml.safe_load(text)
    analysis = document["spec"]["canaryAnalysis"]
    analysis["interval"] = interval
    for metric in analysis.get("metrics") or []:
        metric["interval"] = METRIC_WINDOW
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _faulty_patch() -> str:
    """One change of the pod template (one revision): the new image and its faults together."""
    env = [{"name": k, "value": v} for k, v in FAULTS.items()]
    container = {"name": "podinfod", "image": BAD_IMAGE, "env": env}
    return json.dumps({"spec": {"template": {"spec": {"containers": [container]}}}})


def _wait_phase(phase: str, env: dict[str, str], *, timeout: str = "120s") -> int:
    jsonpath = f"--for=jsonpath={{.status.phase}}={phase}"
    return _run(
        ["kubectl", "-n", "test", "wait", "canary/podinfo", jsonpath, f"--timeout={timeout}"], env
    )


def _follow(env: dict[str, str]) -> int:
    """Wait for the controller's rollout to start, then follow it to its end."""
    if _wait_phase("Progressing", env, timeout="60s") != 0:
        return 2
    return _run(["coalmine", "rollout", "watch", "podinfo", "-n", "test"], env)


# What an earlier demo leaves in namespace test (the cluster keeps its objects across
# `make down` / `make demo`): removed first, so every demo tells the story from its beginning.
LEFTOVERS = (
    "canary/podinfo",
    "deployment/podinfo",
    "deployment/podinfo-primary",
    "hpa/podinfo",
    "hpa/podinfo-primary",
    "service/podinfo",
    "service/podinfo-primary",
    "service/podinfo-canary",
    "virtualservice/podinfo",
    "destinationrule/podinfo-primary",
    "destinationrule/podinfo-canary",
)


def _start_afresh(env: dict[str, str]) -> None:
    found = subprocess.run(
        ["kubectl", "-n", "test", "get", "canary/podinfo", "deployment/podinfo", "-o", "name"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not found:
        return
    _say("An earlier demo left podinfo in namespace test: removing it to start afresh")
    # The Canary first: the controller cancels its rollout (which rolls back) before the rest goes.
    _run(["kubectl", "-n", "test", "delete", "canary/podinfo", "--ignore-not-found"], env)
    time.sleep(3)
    _run(["kubectl", "-n", "test", "delete", "--ignore-not-found", *LEFTOVERS[1:]], env)


def _declarative(stack: Stack, env: dict[str, str], canary: Path) -> int:
    """Steps 1-2: the article's cluster, podinfo, the Canary applied and initialized."""
    _start_afresh(env)
    _say("The article's cluster: Istio's namespace with Prometheus and the public gateway")
    _run(["kubectl", "-n", "istio-system", "get", "service,gateway"], env)
    _say("Deploy podinfo and its HPA in namespace test (the load tester is there already)")
    with resources.as_file(resources.files("sandbox.demo_assets").joinpath("podinfo.yaml")) as m:
        if _run(["kubectl", "apply", "-f", str(m)], env) != 0:
            return 1
    _say("Apply the Canary: the controller creates podinfo-primary, the Services and routes")
    if _run(["kubectl", "apply", "-f", str(canary)], env) != 0:
        return 1
    if _wait_phase("Initialized", env) != 0:
        return 1
    _run(["kubectl", "get", "canaries", "-n", "test"], env)
    _run(["kubectl", "-n", "test", "get", "deploy,svc,virtualservice"], env)
    _say("Users' traffic to podinfo.test (through the mesh, as in production)")
    users_traffic(stack)
    return 0


def run(stack: Stack, *, interval: str = "2s") -> int:
    """The article's story; 0 when every release ended as expected."""
    env = {**os.environ, **stack.env}
    canary = write_canary(stack.state_dir / "podinfo-canary.yaml", interval=interval)
    if _declarative(stack, env, canary) != 0:
        return 1

    _say(f"New release: kubectl set image to {GOOD_IMAGE}; expect Succeeded")
    _run(
        ["kubectl", "-n", "test", "set", "image", "deployment/podinfo", f"podinfod={GOOD_IMAGE}"],
        env,
    )
    good = _follow(env)
    _run(["kubectl", "get", "canaries", "-n", "test"], env)

    faults = ", ".join(f"{k}={v}" for k, v in FAULTS.items())
    _say(
        f"A faulty release: {BAD_IMAGE} with {faults} (30% errors, 1.5s latency); expect a rollback"
    )
    _run(["kubectl", "-n", "test", "patch", "deployment/podinfo", "-p", _faulty_patch()], env)
    bad = _follow(env)
    _run(["kubectl", "get", "canaries", "-n", "test"], env)

    # The faulty canary's requests must leave the metric window first, or the next analysis
    # would judge the new release by them (the canary's workload name is the same).
    _say(f"Waiting {METRIC_WINDOW} for the faulty release's requests to leave the metric window")
    time.sleep(float(METRIC_WINDOW.rstrip("s")))
    _say(f"The CI path: the config fixed, and a CI job ships {CI_IMAGE} with rollout start --wait")
    _run(
        ["kubectl", "-n", "test", "set", "env", "deployment/podinfo", *(f"{k}-" for k in FAULTS)],
        env,
    )
    ci = _run(
        ["coalmine", "rollout", "start", "-f", str(canary), "--image", f"podinfod={CI_IMAGE}",
         "--reason", "ci: release 1.4.3", "--wait"],
        env,
    )  # fmt: skip
    _run(["kubectl", "get", "canaries", "-n", "test"], env)
    _print_next_steps(stack)
    if (good, bad, ci) == (0, 1, 0):
        print(
            "\ndemo: 1.4.1 promoted, the faulty 1.4.2 rolled back, 1.4.3 promoted from CI",
            flush=True,
        )
        return 0
    print(
        f"\ndemo: unexpected outcome (exit codes: 1.4.1 {good}, 1.4.2 {bad}, CI {ci})", flush=True
    )
    return 1


def _print_next_steps(stack: Stack) -> None:
    env_file = stack.state_dir / "env"
    canary = stack.state_dir / "podinfo-canary.yaml"
    image = GOOD_IMAGE.rsplit(":", 1)[0]
    print(
        f"""
What to try next (first: . {env_file}):
  Web UI                  {stack.ui_url}/namespaces/default/workflows
  list rollouts           coalmine rollout list -n test
  one rollout's status    coalmine rollout status podinfo -n test -o json
  the Canaries            kubectl get canaries -A
  a release, declarative  kubectl -n test set image deploy/podinfo podinfod={image}:1.4.4
  watch it live           coalmine rollout watch podinfo -n test
  a release from CI       coalmine rollout start -f {canary} --image podinfod={image}:1.4.5 --wait
  abort it by hand        coalmine rollout abort podinfo -n test --reason "looks wrong"
  the cluster             kubectl get deploy,svc,virtualservice -n test
  stop everything         coalmine down --state-dir {stack.state_dir}""",
        flush=True,
    )
