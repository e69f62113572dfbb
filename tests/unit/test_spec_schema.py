"""The exported JSON Schema of the Canary (deploy/schema/canary.schema.json) matches the models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from workflows.spec import json_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "deploy" / "schema" / "canary.schema.json"


def test_exported_schema_matches_the_models() -> None:
    exported = json.loads(SCHEMA.read_text())
    assert exported == json_schema(), (
        "deploy/schema/canary.schema.json is out of date: run `make schema` and commit it"
    )


def test_python_dash_m_prints_the_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workflows.spec"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == json_schema()


def test_schema_names_flaggers_fields_and_defaults() -> None:
    schema = json_schema()
    defs = schema["$defs"]
    analysis = defs["AnalysisSpec"]["properties"]
    assert analysis["interval"]["default"] == "1m"
    assert analysis["threshold"]["default"] == 1
    assert analysis["maxWeight"]["default"] == 100
    assert defs["MetricSpec"]["properties"]["interval"]["default"] == "1m"
    assert defs["WebhookSpec"]["properties"]["timeout"]["default"] == "10s"
    assert "disableTLS" in defs["WebhookSpec"]["properties"]
    assert defs["CanarySpec"]["properties"]["progressDeadlineSeconds"]["default"] == 600
    assert "canaryAnalysis" in defs["CanarySpec"]["properties"]
    assert "port" in defs["ServiceSpec"]["required"]
    assert set(schema["required"]) == {"metadata", "spec"}
    # Every field is described, so the schema documents the document.
    for name, definition in defs.items():
        for field, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"
