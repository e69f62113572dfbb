"""Query templates: Flagger's variables, the Istio builtins, and refusals of bad templates."""

from __future__ import annotations

import pytest

from activities.analysis.errors import InvalidSpec
from activities.analysis.templates import BUILTIN_QUERIES, TemplateModel, render

MODEL = TemplateModel(
    name="podinfo",
    namespace="test",
    target="podinfo",
    service="podinfo-svc",
    interval="1m",
    variables={"route": "/api"},
)


def test_flagger_variables_render() -> None:
    template = "{{ name }} {{ namespace }} {{ target }} {{ service }} {{ interval }} {{ ingress }}"
    assert render(template, MODEL) == "podinfo test podinfo podinfo-svc 1m podinfo"


def test_template_variables_render() -> None:
    assert render('x{path="{{ variables.route }}"}', MODEL) == 'x{path="/api"}'


def test_istio_success_rate_query_matches_flagger() -> None:
    query = " ".join(render(BUILTIN_QUERIES["istio"]["request-success-rate"], MODEL).split())
    assert 'destination_workload_namespace="test"' in query
    assert 'destination_workload=~"podinfo"' in query
    assert 'response_code!~"5.*"' in query
    assert query.count("[1m]") == 2
    assert query.endswith("* 100")
    assert 'reporter="destination"' in query


def test_istio_duration_query_is_p99_of_the_millisecond_histogram() -> None:
    query = " ".join(render(BUILTIN_QUERIES["istio"]["request-duration"], MODEL).split())
    assert query.startswith("histogram_quantile( 0.99,")
    assert "istio_request_duration_milliseconds_bucket{" in query
    assert query.endswith("by (le) )")


def test_undefined_variable_is_a_configuration_error() -> None:
    with pytest.raises(InvalidSpec, match="undefined"):
        render("{{ variables.missing }}", MODEL)
    with pytest.raises(InvalidSpec, match="undefined"):
        render("{{ nmespace }}", MODEL)


def test_sandbox_refuses_attribute_tricks() -> None:
    with pytest.raises(InvalidSpec):
        render("{{ name.__class__.__mro__[1].__subclasses__() }}", MODEL)


def test_broken_template_is_a_configuration_error() -> None:
    with pytest.raises(InvalidSpec, match="does not render"):
        render("{{ name ", MODEL)
