"""Query templates: Flagger's variables, the Istio builtins, and refusals of bad templates."""

from __future__ import annotations

import pytest

from activities.analysis.templates import TemplateModel, render
from activities.errors import InvalidSpec
from activities.router import provider_for

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
    query = " ".join(render(provider_for("istio").queries["request-success-rate"], MODEL).split())
    assert 'destination_workload_namespace="test"' in query
    assert 'destination_workload=~"podinfo"' in query
    assert 'response_code!~"5.*"' in query
    assert query.count("[1m]") == 2
    assert query.endswith("* 100")
    assert 'reporter="destination"' in query


def test_istio_duration_query_is_p99_of_the_millisecond_histogram() -> None:
    query = " ".join(render(provider_for("istio").queries["request-duration"], MODEL).split())
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


# --- Go's template language, as Flagger's RenderQuery (pkg/metrics/observers/render.go) ------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # printf and friends: fmt's verbs, widths and bad-verb forms.
        ('{{ printf "%s-primary" target }}', "podinfo-primary"),
        ('{{ printf "%s/%s" namespace name }}', "test/podinfo"),
        ('{{ printf "%q" variables.route }}', '"/api"'),
        ('{{ printf "%d%%" 99 }} {{ printf "%05.1f" 2.5 }} {{ printf "%x" 255 }}', "99% 002.5 ff"),
        ('{{ printf "%v %v %v" 1000000.0 0.25 true }}', "1e+06 0.25 true"),
        ('{{ printf "%-6s|" "ab" }} {{ printf "%6s|" "ab" }}', "ab    |     ab|"),
        ('{{ printf "%s" 5 }} {{ printf "%d" }}', "%!s(int=5) %!d(MISSING)"),
        ('{{ print "a" 1 2 "b" }} {{ println namespace }}', "a1 2b test\n"),
        # pipelines, variables, maps and the control structures.
        ('{{ namespace | printf "%s-canary" }}', "test-canary"),
        ('{{ $ns := namespace }}{{ $ns = printf "%s!" $ns }}{{ $ns }}', "test!"),
        ('{{ index variables "route" }} {{ len namespace }} {{ slice target 0 3 }}', "/api 4 pod"),
        ('{{ if eq namespace "test" "prod" }}yes{{ else }}no{{ end }}', "yes"),
        ('{{ if ne namespace "test" }}a{{ else if lt 1 2 }}b{{ else }}c{{ end }}', "b"),
        ("{{ with variables.route }}path={{ . }}{{ end }}", "path=/api"),
        ("{{ range $k, $v := variables }}{{ $k }}:{{ $v }}{{ end }}", "route:/api"),
        ('{{ and namespace "" }}|{{ or "" target }}|{{ not "" }}', "|podinfo|true"),
        ('{{ urlquery "a b&c" }} {{ html "<a>" }} {{ js "it\'s" }}', "a+b%26c &lt;a&gt; it\\'s"),
        ('{{ (printf "%s.%s" target namespace) }}', "podinfo.test"),
        # Trim markers and comments.
        ("a  {{- namespace -}}  b {{/* a comment */}}c", "atestb c"),
        ("{{ route }}|{{ ingress }}", "|podinfo"),
    ],
)
def test_go_template_functions_render_as_flaggers_render_query(
    template: str, expected: str
) -> None:
    assert render(template, MODEL) == expected


def test_a_flagger_docs_template_with_printf_renders() -> None:
    # A MetricTemplate in the style of Flagger's docs (metrics.md), using printf for a regex.
    query = """
    sum(rate(http_requests_total{
        namespace="{{ namespace }}",
        pod=~"{{ printf "%s-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" target }}",
        status!~"5.."
    }[{{ interval }}]))
    """
    rendered = render(query, MODEL)
    assert 'pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"' in rendered
    assert "[1m]" in rendered


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{ name | upper }}", "undefined"),  # a Jinja filter is not a Go function
        ("{{ variables.missing }}", "no entry for key"),  # missingkey=error
        ("{{ .Values.x }}", "no entry for key"),  # nil data
        ("{{ $undeclared }}", "undefined"),
        ("{{ if true }}unclosed", "does not render"),
        ('{{ define "x" }}{{ end }}', "does not render"),
        ('{{ printf "%9999999s" "x" }}', "does not render"),  # no gigabyte of padding
        ('{{ eq 1 "1" }}', "incompatible types"),
        ("{{ namespace.length }}", "can't evaluate field"),
    ],
)
def test_bad_go_templates_are_configuration_errors(template: str, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        render(template, MODEL)
