"""The bad-input corpus: every malformed Canary is refused with a SpecError naming the problem.

Each file in tests/data/bad-canaries/ is one document with one thing wrong, named for it. Its
header says what the error must name: ``# expect: <field path>`` (a path as the document spells
it, e.g. ``spec.analysis.stepWeight``) or ``# expect-message: <text>`` for problems of the whole
text (YAML syntax, several documents, size), which have no field.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from workflows.spec import MAX_DOCUMENT_BYTES, SpecError, parse_canary

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad-canaries"
_HEADER = re.compile(r"^# (expect|expect-message): (.+)$", re.MULTILINE)
FILES = sorted(CORPUS.glob("*.yaml"))


def _expectation(path: Path) -> tuple[str, str]:
    found = _HEADER.search(path.read_text())
    assert found, f"{path.name} has no '# expect: <path>' header"
    return found.group(1), found.group(2).strip()


def test_the_corpus_is_large_enough() -> None:
    assert len(FILES) >= 50


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_bad_canary_is_refused_naming_the_problem(path: Path) -> None:
    kind, expected = _expectation(path)
    with pytest.raises(SpecError) as caught:
        parse_canary(path.read_text())
    error = caught.value
    if kind == "expect":
        assert expected in error.paths, f"expected a problem at {expected}, got:\n{error}"
    else:
        assert expected in str(error), f"expected {expected!r} in:\n{error}"
    # Every problem says something beyond its path, on a line of its own.
    assert all(problem.message.strip() for problem in error.problems)
    assert len(str(error).splitlines()) == len(error.problems) + 1


@pytest.mark.parametrize(
    "path", [f for f in FILES if _expectation(f)[0] == "expect"], ids=lambda f: f.stem
)
def test_the_loaded_mapping_is_refused_the_same_way(path: Path) -> None:
    # The CLI may hand parse_canary a mapping it loaded itself: same verdict, same paths.
    document = yaml.safe_load(path.read_text())
    with pytest.raises(SpecError) as from_text:
        parse_canary(path.read_text())
    with pytest.raises(SpecError) as from_mapping:
        parse_canary(document)
    assert from_mapping.value.paths == from_text.value.paths


def test_a_huge_document_is_refused() -> None:
    valid = (CORPUS.parents[2] / "examples" / "podinfo-canary.yaml").read_text()
    padding = "".join(f"    # filler line {i:07d} {'x' * 60}\n" for i in range(16_000))
    text = valid.replace("  analysis:\n", "  analysis:\n" + padding)
    assert len(text.encode()) > MAX_DOCUMENT_BYTES
    with pytest.raises(SpecError, match="over the 1024 KiB limit") as caught:
        parse_canary(text)
    assert len(caught.value.problems) == 1
