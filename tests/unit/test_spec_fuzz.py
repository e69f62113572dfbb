"""Property: whatever it is given, ``parse_canary`` returns a Canary or raises SpecError.

Random JSON-ish structures, random text, YAML renderings of both, and mutations of the valid
example (a value replaced, a key removed or added at a random place) — never another exception,
so the CLI can always answer with a message and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflows.spec import Canary, SpecError, parse_canary

VALID = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "examples" / "podinfo-canary.yaml").read_text()
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["30s", "1m", "0s", "-1s", "1h", "http://x/", "Canary", "flagger.app/v1beta1"]
    )
)
keys = (
    st.text(max_size=12)
    | st.sampled_from(
        ["spec", "analysis", "canaryAnalysis", "metrics", "stepWeight", "threshold", "name", "kind"]
    )
    | st.integers()
    | st.booleans()
    | st.none()
)
json_ish = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=25,
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _only_spec_errors(source: Any) -> None:
    refused: SpecError | None = None
    try:
        result = parse_canary(source)
    except SpecError as error:
        refused = error
    if refused is None:
        assert isinstance(result, Canary)
    else:
        assert refused.problems
        assert str(refused).startswith("invalid Canary")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


ALL_PATHS = _paths(VALID)[1:]


@FUZZ
@given(json_ish)
def test_random_structures(value: Any) -> None:
    _only_spec_errors(value)


@FUZZ
@given(json_ish)
def test_random_structures_as_yaml(value: Any) -> None:
    _only_spec_errors(yaml.safe_dump(value))


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_random_text(text: str | bytes) -> None:
    _only_spec_errors(text)


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["set", "delete", "add"]), json_ish),
        min_size=1,
        max_size=3,
    )
)
def test_mutations_of_the_valid_example(mutations: list[tuple[tuple[Any, ...], str, Any]]) -> None:
    document = copy.deepcopy(VALID)
    for path, action, value in mutations:
        parent: Any = document
        try:
            for part in path[:-1]:
                parent = parent[part]
            if action == "set":
                parent[path[-1]] = value
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[f"{path[-1]}x"] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this branch
    _only_spec_errors(document)
    _only_spec_errors(yaml.safe_dump(document))
