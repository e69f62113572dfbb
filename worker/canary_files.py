"""Reading Canary files for the command line: which namespace, which interval floor, which files.

Both ``coalmine rollout start -f`` and ``coalmine canary validate -f`` read Canaries as ``kubectl
apply`` would place them and as Flagger would run them:

- **Namespace.** A Canary without ``metadata.namespace`` goes where ``kubectl apply -f`` would
  put it: the ``-n/--namespace`` flag, else the namespace of the kubeconfig's current (or
  ``--context``) context, else the pod's service-account namespace when running in a cluster,
  else ``default``. A document naming a namespace other than ``-n`` is refused, as kubectl
  refuses it.
- **Interval floor.** Flagger runs an analysis interval under 10s every 10s
  (``Canary.GetAnalysisInterval``); so does Coalmine. ``COALMINE_MIN_ANALYSIS_INTERVAL`` (a
  duration, e.g. ``1s``) lowers the floor for local stacks and tests, where a rollout of a few
  seconds per step is the point.
- **Files.** ``-f`` takes files, directories (their ``.yaml``, ``.yml`` and ``.json`` files;
  ``--recursive`` descends) and ``-`` for standard input; a file may hold several documents.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config

from worker.errors import BadInputError
from worker.settings import KubernetesSettings
from workflows._base import duration_seconds
from workflows.spec import (
    FLAGGER_MIN_INTERVAL_SECONDS,
    ReadCanary,
    SpecError,
    SpecProblem,
    load_documents,
    read_canary,
)

MIN_INTERVAL_ENV = "COALMINE_MIN_ANALYSIS_INTERVAL"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
EXTENSIONS = (".yaml", ".yml", ".json")


def min_interval_seconds(env: Mapping[str, str] | None = None) -> float:
    """The analysis interval floor: Flagger's 10s, or ``COALMINE_MIN_ANALYSIS_INTERVAL``."""
    value = (os.environ if env is None else env).get(MIN_INTERVAL_ENV)
    if not value:
        return FLAGGER_MIN_INTERVAL_SECONDS
    try:
        return duration_seconds(value)
    except ValueError:
        raise BadInputError(
            f"{MIN_INTERVAL_ENV}={value!r} is not a duration: write e.g. 1s or 10s"
        ) from None


def context_namespace(settings: KubernetesSettings) -> str | None:
    """The namespace ``kubectl`` would use: the kubeconfig context's, or the pod's own."""
    if settings.in_cluster:
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
        except OSError:
            return None
    try:
        contexts, current = kube_config.list_kube_config_contexts(
            config_file=str(settings.kubeconfig) if settings.kubeconfig else None
        )
    except Exception:  # no kubeconfig, or an unreadable one: kubectl falls back to default too
        return None
    wanted = settings.context or (current or {}).get("name")
    chosen = next((c for c in contexts or [] if c.get("name") == wanted), None)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


@dataclass(frozen=True)
class Placement:
    """Where Canaries of the command line go, and which interval floor applies."""

    flag: str | None
    """The ``-n`` given, if any: a document naming another namespace is refused."""
    fallback: str
    """The namespace of a document that names none."""
    min_interval_seconds: float

    @classmethod
    def resolve(cls, flag: str | None, settings: KubernetesSettings) -> Placement:
        fallback = flag or context_namespace(settings) or "default"
        return cls(flag=flag, fallback=fallback, min_interval_seconds=min_interval_seconds())

    def read(self, document: str | Mapping[str, Any]) -> ReadCanary:
        """A Canary placed and floored; ``SpecError`` for its problems (namespace included)."""
        read = read_canary(
            document, namespace=self.fallback, min_interval_seconds=self.min_interval_seconds
        )
        if self.flag is not None and read.canary.namespace != self.flag:
            raise SpecError.single(
                f"the document's namespace {read.canary.namespace!r} does not match "
                f"-n {self.flag!r}: drop one of them or make them agree (as kubectl does)",
                path="metadata.namespace",
            )
        return read


def read_canary_file(path: Path, placement: Placement) -> ReadCanary:
    """The one Canary of a file for ``rollout start``; ``BadInputError`` (exit 2) naming the
    file and every problem when it is invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {err.strerror}") from err
    try:
        return placement.read(text)
    except SpecError as err:
        raise BadInputError(f"{path}: {err}") from err


# --- many files, many documents (canary validate) -------------------------------------------


@dataclass(frozen=True)
class Source:
    """One text to check: a file, or standard input."""

    label: str
    path: Path | None
    explicit: bool
    """Named on the command line (rather than found in a directory): it must hold a Canary."""

    def read(self) -> str:
        if self.path is None:
            return sys.stdin.read()
        return self.path.read_text(encoding="utf-8")


def sources(arguments: list[str], *, recursive: bool) -> Iterator[Source]:
    """The texts ``-f`` names, in order; a missing path is a `BadInputError`."""
    for argument in arguments:
        if argument == "-":
            yield Source(label="<stdin>", path=None, explicit=True)
            continue
        path = Path(argument)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            for file in sorted(f for f in found if f.suffix in EXTENSIONS and f.is_file()):
                yield Source(label=str(file), path=file, explicit=False)
        elif path.exists():
            yield Source(label=str(path), path=path, explicit=True)
        else:
            raise BadInputError(f"-f {argument}: no such file or directory")


@dataclass(frozen=True)
class Checked:
    """The verdict on one document (or on a whole text, when it could not be split)."""

    source: str
    index: int | None
    """1-based position of the document in its text; None for a problem of the whole text."""
    total: int
    canary: str | None
    """``namespace/name`` of a valid Canary."""
    problems: tuple[SpecProblem, ...] = ()
    notes: tuple[SpecProblem, ...] = ()

    @property
    def where(self) -> str:
        if self.index is None or self.total <= 1:
            return self.source
        return f"{self.source} (document {self.index})"


def _is_canary(document: Any, alone: bool) -> bool:
    if not isinstance(document, Mapping):
        return alone
    kind = document.get("kind")
    return kind == "Canary" or (kind is None and alone)


def check_source(source: Source, placement: Placement) -> list[Checked]:
    """Every Canary of one text, checked; non-Canary documents are left alone."""
    try:
        documents = load_documents(source.read())
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        problem = SpecProblem("", f"cannot read it: {reason}")
        return [Checked(source.label, None, 0, None, (problem,))]
    except SpecError as err:
        return [Checked(source.label, None, 0, None, err.problems)]
    results: list[Checked] = []
    for index, document in enumerate(documents, start=1):
        if not _is_canary(document, alone=len(documents) == 1):
            continue
        try:
            read = placement.read(document)
        except SpecError as err:
            results.append(Checked(source.label, index, len(documents), None, err.problems))
            continue
        name = f"{read.canary.namespace}/{read.canary.name}"
        results.append(Checked(source.label, index, len(documents), name, notes=read.notes))
    if not results and source.explicit:
        kinds = sorted({str(d.get("kind")) for d in documents if isinstance(d, Mapping)})
        found = f" (kinds found: {', '.join(kinds)})" if kinds else ""
        problem = SpecProblem("", f"no Canary in it{found}: pass the Canary's file")
        return [Checked(source.label, None, 0, None, (problem,))]
    return results
