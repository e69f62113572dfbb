"""Strategy selection and the fields that choose it, read as Flagger reads them (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from workflows.spec import Canary, SpecError, Strategy, parse_canary, strategy_of

BASE = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, threshold: 5}
"""


def _canary(service: dict[str, Any] | None = None, **analysis: Any) -> Canary:
    document = yaml.safe_load(BASE)
    document["spec"]["analysis"].update(analysis)
    document["spec"]["service"].update(service or {})
    return parse_canary(document)


def _problems(service: dict[str, Any] | None = None, **analysis: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        _canary(service, **analysis)
    return {p.path: p.message for p in caught.value.problems}


@pytest.mark.parametrize(
    ("iterations", "match", "mirror", "expected"),
    [
        (10, [{"headers": {"x-canary": {"exact": "insider"}}}], False, Strategy.AB_TESTING),
        # Flagger's runAB never mirrors: match + iterations is A/B whatever mirror says.
        (10, [{"headers": {"x-canary": {"exact": "insider"}}}], True, Strategy.AB_TESTING),
        (10, None, False, Strategy.BLUE_GREEN),
        (10, None, True, Strategy.BLUE_GREEN_MIRRORING),
        (0, None, False, Strategy.CANARY),
        (0, None, True, Strategy.CANARY_MIRRORING),
        # match without iterations: Flagger's canary loop, weights on the matched route.
        (0, [{"headers": {"x-canary": {"exact": "insider"}}}], False, Strategy.CANARY),
    ],
)
def test_strategy_is_chosen_in_flaggers_order(
    iterations: int, match: list[Any] | None, mirror: bool, expected: Strategy
) -> None:
    assert strategy_of(iterations=iterations, match=match, mirror=mirror) == expected
    analysis: dict[str, Any] = {"iterations": iterations, "mirror": mirror}
    if match:
        analysis["match"] = match
    if not iterations:
        analysis["stepWeight"] = 10
    assert _canary(**analysis).spec.analysis.strategy == expected


def test_iterative_strategies_need_no_weights() -> None:
    # Flagger's Blue/Green tutorial sets iterations and no stepWeight; a stray 0 is "unset".
    analysis = _canary(iterations=10, stepWeight=0).spec.analysis
    assert (analysis.iterations, analysis.step_weight) == (10, None)


def test_a_canary_still_needs_weights() -> None:
    assert "spec.analysis.stepWeight" in _problems(iterations=0)


def test_header_matches_take_exactly_one_kind() -> None:
    canary = _canary(
        iterations=5,
        match=[
            {"headers": {"user-agent": {"regex": ".*Firefox.*"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
            {"sourceLabels": {"app": "frontend"}},
            {"headers": {"x-env": {"prefix": "stag"}, "x-zone": {"suffix": "-1"}}},
        ],
    )
    match = canary.spec.analysis.match
    assert match[2].source_labels == {"app": "frontend"}
    problems = _problems(iterations=5, match=[{"headers": {"x": {"exact": "a", "regex": "b"}}}])
    assert "exactly one of exact, prefix, suffix or regex" in "".join(problems.values())


def test_an_unknown_match_field_is_refused() -> None:
    problems = _problems(iterations=5, match=[{"header": {"x": {"exact": "a"}}}])
    assert any("match" in path for path in problems)


def test_session_affinity_reads_flaggers_fields() -> None:
    affinity = _canary(
        stepWeight=10, sessionAffinity={"cookieName": "flagger-cookie", "maxAge": 21600}
    ).spec.analysis.session_affinity
    assert affinity is not None
    assert affinity.set_cookie(affinity.cookie("abc")) == "flagger-cookie=abc; Max-Age=21600"
    default = _canary(stepWeight=10, sessionAffinity={"cookieName": "c", "maxAge": 0})
    assert default.spec.analysis.session_affinity is not None
    assert default.spec.analysis.session_affinity.max_age == 86400
    assert "spec.analysis.sessionAffinity.cookieName" in _problems(
        stepWeight=10, sessionAffinity={"maxAge": 10}
    )


def test_mirror_weight_is_a_percentage() -> None:
    assert _canary(stepWeight=10, mirror=True, mirrorWeight=50).spec.analysis.mirror_weight == 50
    assert "spec.analysis.mirrorWeight" in _problems(stepWeight=10, mirror=True, mirrorWeight=101)


def test_delegation_is_read_and_refuses_hosts_as_flagger_does() -> None:
    assert _canary({"delegation": True}, stepWeight=10).spec.service.delegation
    problems = _problems({"delegation": True, "hosts": ["app.example.com"]}, stepWeight=10)
    assert "cannot have hosts or gateways" in "".join(problems.values())


def test_kubernetes_provider_runs_blue_green() -> None:
    document = yaml.safe_load(BASE)
    document["spec"]["provider"] = "kubernetes"
    document["spec"]["analysis"].update(iterations=10)
    assert parse_canary(document).spec.analysis.strategy == Strategy.BLUE_GREEN
    document["spec"]["analysis"] = {"stepWeight": 10}
    with pytest.raises(SpecError, match="Blue/Green only"):
        parse_canary(document)
    document["spec"]["analysis"] = {"iterations": 10, "mirror": True}
    with pytest.raises(SpecError, match="not supported yet by Coalmine's kubernetes router"):
        parse_canary(document)
