"""Flagger's Istio tutorials on the local stack, their Canary YAML as Flagger wrote it (issue 13).

tests/data/flagger-tutorials/istio-*.yaml hold the Canaries of the A/B testing tutorial, Blue/Green
(deployment-strategies.md), Blue/Green with mirroring, canary with mirroring and session affinity
(istio-progressive-delivery.md), each verbatim but for ``analysis.interval`` (2s for 1m; each file
says where it comes from). Flagger's podinfo is ``kubernetes-podinfo.yaml`` (Deployment and HPA).

The declarative path, as the tutorials run it: ``kubectl apply`` the Canary, ``kubectl set image``,
and the controller (its own ServiceAccount) starts the rollout that the product's worker (the
``coalmine`` ServiceAccount) runs; one Canary after another on the same podinfo in namespace
``test``, where the load tester is, each applied over the last (a changed spec at rest
re-initializes the routes). Each tutorial promotes, its own route shape seen on the way. Then the
CI path: ``coalmine rollout start -f <tutorial> --image … --wait`` as a CI job runs it, the
controller stopped. Last, the A/B tutorial rolls back when its matched users (the
``type=insider`` cookie) get 500s, as the tutorial's ``curl -b 'type=insider' …/status/500`` loop
makes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sandbox.runner import SandboxHandle
from tests.conftest import Kubectl, TemporalServer
from tests.integration.rollout_support import api_client, read_status, rollout_worker
from worker.controller import Actions, Controller, ControllerSettings
from worker.controller._decide import recorded_spec, spec_hash
from worker.kubecache import KubeConfig
from worker.settings import TemporalSettings
from workflows.model import RolloutStatus, workflow_id

__all__ = ["api_client", "rollout_worker"]  # fixtures used by the tests below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TUTORIALS = Path(__file__).resolve().parents[1] / "data" / "flagger-tutorials"
COALMINE = str(Path(sys.executable).parent / "coalmine")
NS = "test"  # the tutorials' namespace, where the sandbox's load tester runs
IMAGE = "ghcr.io/stefanprodan/podinfo"
FIRST = f"{IMAGE}:6.0.0"  # kubernetes-podinfo.yaml's
MIN_READY_ZERO = '{"spec": {"minReadySeconds": 0}}'
LEFTOVERS = [
    "canary/podinfo",
    *(
        f"{kind}/{name}"
        for kind in ("deployment", "hpa")
        for name in ("podinfo", "podinfo-primary")
    ),
    *(f"service/{name}" for name in ("podinfo", "podinfo-primary", "podinfo-canary")),
    "virtualservice/podinfo",
    "destinationrule/podinfo-primary",
    "destinationrule/podinfo-canary",
]
"""Whatever an earlier podinfo in the namespace left (another test's, another provider's)."""


def tutorial(name: str) -> str:
    return (TUTORIALS / name).read_text()


async def kube(kubectl: Kubectl, *args: str, stdin: str | None = None) -> str:
    # A thread: the controller and the worker share the test's event loop.
    proc = await asyncio.to_thread(kubectl.run, *args, stdin=stdin)
    return str(proc.stdout)


async def get(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(await kube(kubectl, "-n", NS, "get", kind, name, "-o", "json"))
    return obj


async def primary_image(kubectl: Kubectl) -> str:
    primary = await get(kubectl, "deployment", "podinfo-primary")
    image: str = primary["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


async def apply_canary(kubectl: Kubectl, client: Client, canary_file: str) -> None:
    """``kubectl apply`` the tutorial's Canary, then wait for the run the controller starts for
    it (the first: initialization; a changed spec at rest: its routes converged) to end, so the
    release that follows is analysed under this Canary."""
    wid = workflow_id(cluster="default", namespace=NS, name="podinfo")

    async def runs() -> int:
        return len([w async for w in client.list_workflows(f"WorkflowId = '{wid}'")])

    before = await runs()
    live = await kube(
        kubectl, "-n", NS, "get", "canary", "podinfo", "--ignore-not-found", "-o", "json"
    )
    await kube(kubectl, "apply", "-f", "-", stdin=tutorial(canary_file))
    wanted = spec_hash(yaml.safe_load(tutorial(canary_file)))
    if live.strip() and recorded_spec(json.loads(live)) == wanted:
        return  # only the analysis changed: nothing to converge before the release
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await runs() > before:
            description = await client.get_workflow_handle(wid).describe()
            if description.status is not None and description.status.name != "RUNNING":
                return
        await asyncio.sleep(0.25)
    raise AssertionError(f"no run of the controller's ended for {canary_file}")


class Declarative:
    """The controller, as a cluster runs it beside the worker; paused by the CI path's test."""

    def __init__(self, client: Client, sandbox: SandboxHandle, task_queue: str) -> None:
        self._client, self._sandbox, self._queue = client, sandbox, task_queue
        self._running: tuple[Controller, Any] | None = None

    async def start(self) -> None:
        config = KubeConfig.load(self._sandbox.controller_kubeconfig)
        session = config.session(user_agent="coalmine-controller-tutorials")
        actions = Actions(
            client=self._client,
            temporal=TemporalSettings(task_queue=self._queue),
            config=config,
            session=session,
            cluster="default",
        )
        controller = Controller(config, actions, ControllerSettings(min_interval_seconds=1.0))
        await controller.start()
        self._running = (controller, session)

    async def stop(self) -> None:
        if self._running is not None:
            controller, session = self._running
            self._running = None
            await controller.close()
            await session.close()


@pytest.fixture(scope="module")
async def declarative(
    dev_server_env: WorkflowEnvironment,
    sandbox_cluster: SandboxHandle,
    rollout_worker: Worker,
    kubectl: Kubectl,
) -> AsyncIterator[Declarative]:
    """Flagger's podinfo in ``test`` (the tutorials' bootstrap) and the controller running."""
    await kube(kubectl, "-n", NS, "delete", *LEFTOVERS, "--ignore-not-found", "--wait=true")
    await kube(kubectl, "-n", NS, "apply", "-f", "-", stdin=tutorial("kubernetes-podinfo.yaml"))
    # Its minReadySeconds (5) would add ten seconds to each of the module's rollouts (the canary
    # scaled up, the primary rolled): the pods of the local cluster are ready at once anyway.
    await kube(kubectl, "-n", NS, "patch", "deployment", "podinfo", "-p", MIN_READY_ZERO)
    running = Declarative(dev_server_env.client, sandbox_cluster, rollout_worker.task_queue)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        # The cluster is shared by the whole session: leave the namespace as it was found.
        await kube(kubectl, "-n", NS, "delete", *LEFTOVERS, "--ignore-not-found", "--wait=false")


Shape = dict[str, Any]


def route_shape(vs: dict[str, Any]) -> list[Shape]:
    """Each HTTP route of the VirtualService: matched or not, its weights, mirror, cookies."""
    shapes = []
    for route in vs["spec"].get("http") or []:
        shapes.append(
            {
                "match": bool(route.get("match")),
                "weights": {
                    d["destination"]["host"].split(".")[0]: d.get("weight", 0)
                    for d in route.get("route") or []
                },
                "mirror": "mirror" in route,
                "set_cookie": "Set-Cookie" in json.dumps(route),
            }
        )
    return shapes


class Release:
    """One ``kubectl set image`` and what the rollout it starts shows until it comes to rest."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.kubectl = kubectl
        self.shapes: list[list[Shape]] = []
        self.phases: list[str] = []

    async def run(self, tag: str, *, within: float = 120) -> dict[str, Any]:
        """Release ``tag``; the Canary's status once the rollout ended (Succeeded or Failed)."""
        before = (await get(self.kubectl, "canary", "podinfo")).get("status") or {}
        await kube(self.kubectl, "-n", NS, "set", "image", "deployment/podinfo", f"podinfod={tag}")
        deadline = time.monotonic() + within
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = (await get(self.kubectl, "canary", "podinfo")).get("status") or {}
            phase = str(status.get("phase"))
            if not self.phases or self.phases[-1] != phase:
                self.phases.append(phase)
            if phase in ("Progressing", "Promoting", "Finalising"):
                shape = route_shape(await get(self.kubectl, "virtualservice", "podinfo"))
                if not self.shapes or self.shapes[-1] != shape:
                    self.shapes.append(shape)
            moved = status.get("lastAppliedSpec") != before.get("lastAppliedSpec")
            if moved and "Progressing" in self.phases and phase in ("Succeeded", "Failed"):
                return status
            await asyncio.sleep(0.25)
        raise AssertionError(f"the rollout of {tag} never came to rest: {status}, {self.phases}")


def seen(release: Release, test: Callable[[Shape], bool]) -> bool:
    return any(test(route) for shape in release.shapes for route in shape)


def canary_share(route: Shape) -> int:
    return int(route["weights"].get("podinfo-canary", 0))


TUTORIAL_RUNS: list[tuple[str, str, Callable[[Release], bool]]] = [
    # A/B testing: the insider's route sends them to the canary, everyone else to the primary.
    (
        "istio-ab-testing.yaml",
        "6.0.1",
        lambda r: (
            seen(r, lambda route: route["match"] and canary_share(route) == 100)
            and not seen(r, lambda route: not route["match"] and canary_share(route) > 0)
        ),
    ),
    # Blue/Green: no user on the canary until the switch, then all of them at once.
    (
        "istio-blue-green.yaml",
        "6.0.2",
        lambda r: (
            seen(r, lambda route: canary_share(route) == 100)
            and not seen(r, lambda route: 0 < canary_share(route) < 100)
        ),
    ),
    # Blue/Green with mirroring: the users' requests copied to the canary before the switch.
    (
        "istio-blue-green-mirroring.yaml",
        "6.0.3",
        lambda r: (
            seen(r, lambda route: route["mirror"] and canary_share(route) == 0)
            and not seen(r, lambda route: 0 < canary_share(route) < 100)
        ),
    ),
    # Canary with mirroring: a mirrored interval, then the weights step up.
    (
        "istio-canary-mirroring.yaml",
        "6.0.4",
        lambda r: (
            seen(r, lambda route: route["mirror"] and canary_share(route) == 0)
            and seen(r, lambda route: canary_share(route) == 50)
        ),
    ),
    # Session affinity: weighted steps and the canary's cookie route.
    (
        "istio-session-affinity.yaml",
        "6.0.5",
        lambda r: (
            seen(r, lambda route: route["set_cookie"])
            and seen(r, lambda route: route["match"] and canary_share(route) == 100)
            and seen(r, lambda route: not route["match"] and canary_share(route) == 50)
        ),
    ),
]


@pytest.mark.parametrize(
    ("canary_file", "tag", "shape_ok"), TUTORIAL_RUNS, ids=[run[0] for run in TUTORIAL_RUNS]
)
async def test_tutorial_promotes_through_the_declarative_path(
    declarative: Declarative,
    kubectl: Kubectl,
    canary_file: str,
    tag: str,
    shape_ok: Callable[[Release], bool],
    dev_server_env: WorkflowEnvironment,
) -> None:
    await apply_canary(kubectl, dev_server_env.client, canary_file)
    release = Release(kubectl)

    status = await release.run(f"{IMAGE}:{tag}")

    assert status["phase"] == "Succeeded", (status, release.phases)
    assert await primary_image(kubectl) == f"{IMAGE}:{tag}"
    assert status["lastPromotedSpec"] == status["lastAppliedSpec"]
    assert shape_ok(release), json.dumps(release.shapes, indent=1)
    # Back at rest: every user on the primary, no mirror.
    final = route_shape(await get(kubectl, "virtualservice", "podinfo"))
    assert all(canary_share(route) == 0 and not route["mirror"] for route in final), final


async def test_a_tutorial_through_the_ci_path(
    declarative: Declarative,
    kubectl: Kubectl,
    sandbox_cluster: SandboxHandle,
    temporal_server: TemporalServer,
    rollout_worker: Worker,
    tmp_path: Path,
) -> None:
    """``coalmine rollout start -f <tutorial> --image … --wait`` as a CI job runs it: the same
    file, no controller; exit 0 once promoted, with the log Flagger users recognise. The file is
    the session affinity tutorial with Flagger's ``primaryCookieName`` lines: while it runs, a
    user the weights sent to the primary gets the primary's cookie and stays there. (Before the
    rollback below: a 1m metric window would still hold its errors.)"""
    await declarative.stop()
    canary_file = tmp_path / "podinfo-canary-session-affinity.yaml"
    canary_file.write_text(tutorial("istio-session-affinity-primary-cookie.yaml"))
    before = await primary_image(kubectl)
    env = {
        **sandbox_cluster.env,
        "KUBECONFIG": str(sandbox_cluster.kubeconfig),
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TEMPORAL_TASK_QUEUE": rollout_worker.task_queue,
        "COALMINE_MIN_ANALYSIS_INTERVAL": "1s",
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
    }
    tag = f"{IMAGE}:6.1.0"
    command = ["rollout", "start", "-f", str(canary_file), "--image", f"podinfod={tag}", "--wait"]
    stop = asyncio.Event()
    users = asyncio.create_task(_primary_cookie_holders(sandbox_cluster, stop))
    try:
        proc = await asyncio.to_thread(
            subprocess.run,
            [COALMINE, *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        stop.set()
        set_cookie, versions = await users
    log = f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, log
    assert "Promotion completed!" in proc.stdout, log
    assert "strategy=canary" in proc.stdout, log
    assert await primary_image(kubectl) == tag
    # The primary's answers set its cookie (Max-Age: the 2s interval); its holders stayed there.
    assert set_cookie.startswith("primary-flagger-cookie="), set_cookie
    assert set_cookie.endswith("; Max-Age=2"), set_cookie
    assert versions, "no request carried the primary's cookie while the canary had a share"
    assert set(versions) == {before.rsplit(":", 1)[1]}, versions
    await declarative.start()  # the declarative path again, for the rollback below


async def _primary_cookie_holders(
    sandbox: SandboxHandle, stop: asyncio.Event
) -> tuple[str, list[str]]:
    """A user of app.example.com while the rollout runs: the first answer that sets the
    primary's cookie (the first step: the canary has a share from then on), then ten requests
    sending it back at once; the Set-Cookie and the versions that answered those ten."""
    set_cookie, versions = "", []
    async with httpx.AsyncClient(proxy=sandbox.mesh_url, timeout=5, trust_env=False) as http:
        while not stop.is_set() and not set_cookie:
            with contextlib.suppress(httpx.HTTPError):
                answer = await http.get("http://app.example.com/")
                given = answer.headers.get("set-cookie", "")
                if given.startswith("primary-flagger-cookie="):
                    set_cookie = given
            await asyncio.sleep(0.05)
        cookie = {"Cookie": set_cookie.split(";", maxsplit=1)[0]}
        for _ in range(10 if set_cookie else 0):
            answer = await http.get("http://app.example.com/", headers=cookie)
            versions.append(str(answer.json().get("version")))
    return set_cookie, versions


async def _insiders_get_errors(sandbox: SandboxHandle, stop: asyncio.Event) -> int:
    """The tutorial's ``watch curl -b 'type=insider' http://app.example.com/status/500``, at the
    load test's pace: 500s for the matched users while the rollout runs."""
    sent = 0
    async with httpx.AsyncClient(proxy=sandbox.mesh_url, timeout=5, trust_env=False) as http:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                await http.get(
                    "http://app.example.com/status/500", headers={"Cookie": "type=insider"}
                )
                sent += 1
            await asyncio.sleep(0.04)
    return sent


async def test_ab_testing_rolls_back_when_the_insiders_get_errors(
    declarative: Declarative,
    kubectl: Kubectl,
    sandbox_cluster: SandboxHandle,
    dev_server_env: WorkflowEnvironment,
) -> None:
    await apply_canary(kubectl, dev_server_env.client, "istio-ab-testing.yaml")
    before = await primary_image(kubectl)
    stop = asyncio.Event()
    errors = asyncio.create_task(_insiders_get_errors(sandbox_cluster, stop))
    try:
        release = Release(kubectl)
        status = await release.run(f"{IMAGE}:6.0.9")
    finally:
        stop.set()
        sent = await errors
    assert sent > 0
    assert status["phase"] == "Failed"
    assert await primary_image(kubectl) == before
    final = route_shape(await get(kubectl, "virtualservice", "podinfo"))
    assert final[0]["match"]  # the insiders' route, back on the primary
    assert all(canary_share(route) == 0 for route in final), final
    handle = dev_server_env.client.get_workflow_handle(
        workflow_id(cluster="default", namespace=NS, name="podinfo")
    )
    rollout: RolloutStatus = await read_status(handle)
    assert rollout.strategy == "ab-testing"
    reasons = [check.message for check in rollout.failed_check_history]
    assert any("success rate" in reason for reason in reasons), reasons
