"""The README's first command as a new user runs it: `coalmine demo` on a fresh state directory.

It must end with one rollout promoted and one rolled back, and both must be visible in the
Temporal Web UI — checked through the UI server's own HTTP API, which is what its pages call.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

COALMINE = str(Path(sys.executable).parent / "coalmine")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _ui_workflows(ui_url: str) -> list[dict[str, object]]:
    query = urllib.parse.quote("WorkflowType = 'CanaryRollout' AND CanaryNamespace = 'test'")
    url = f"{ui_url}/api/v1/namespaces/default/workflows?query={query}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return list(json.load(response).get("executions", []))


def test_demo_promotes_one_release_and_rolls_back_the_faulty_one(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    try:
        demo = subprocess.run(
            [COALMINE, "demo", "--state-dir", str(state), "--interval", "1s"],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output
        # The scenario's events, line by line, as the article shows them.
        for line in (
            "New revision detected! Scaling up podinfo.test",
            "Advance podinfo.test canary weight 5",
            "Advance podinfo.test canary weight 50",
            "Copying podinfo.test template spec to podinfo-primary.test",
            "Promotion completed! Scaling down podinfo.test",
            "Halt podinfo.test advancement",
            "Rolling back podinfo.test failed checks threshold reached 10",
            "Canary failed! Scaling down podinfo.test",
            "canary.flagger.app/podinfo condition met",
            "new revision handed to the running rollout",
        ):
            assert line in output, f"missing {line!r} in:\n{output}"
        assert "/namespaces/default/workflows/canary%2Fdefault%2Ftest%2Fpodinfo" in output

        ports = json.loads((state / "stack.json").read_text())["ports"]
        runs = _ui_workflows(f"http://127.0.0.1:{ports['ui']}")
        statuses = [str(run["status"]) for run in runs]
        # initialization, 1.4.1 (kubectl set image) and the CI release (the fix's rollout,
        # joined by `rollout start`) completed; the faulty 1.4.2 failed (rolled back)
        assert statuses.count("WORKFLOW_EXECUTION_STATUS_FAILED") == 1, statuses
        assert statuses.count("WORKFLOW_EXECUTION_STATUS_COMPLETED") == 3, statuses
        failed = next(r for r in runs if r["status"] == "WORKFLOW_EXECUTION_STATUS_FAILED")
        fields = failed["searchAttributes"]["indexedFields"]  # type: ignore[index]
        assert "CanaryPhase" in fields
    finally:
        subprocess.run([COALMINE, "down", "--state-dir", str(state)], timeout=60, check=False)
