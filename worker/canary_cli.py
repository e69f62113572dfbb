"""``coalmine canary …``: work on Canary documents without a cluster or Temporal.

``coalmine canary validate -f FILE [-f FILE …]`` checks Canaries the way ``rollout start`` reads
them (same models, same namespace rules, same interval floor; see `worker.canary_files`) and
changes nothing: a lint step for CI. Exit 0 when every Canary is valid, 2 otherwise. Each problem
is one line: the file (and the document's position when the file holds several), the field path
as the document spells it, and what to do. Notes say where Flagger's rules read a document
differently from how it looks (a metric without threshold, an interval under 10s); they never
fail the check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from worker import cli_common as common
from worker.canary_files import Checked, Placement, check_source, sources
from worker.errors import EXIT_BAD_INPUT, EXIT_OK, BadInputError
from worker.settings import KubernetesSettings

app = typer.Typer(
    help="Work on Canary documents (no cluster or Temporal needed).", no_args_is_help=True
)


def _line(prefix: str, where: str, path: str, message: str) -> str:
    return f"{prefix} {where}: {path + ': ' if path else ''}{message}"


def _text_report(results: list[Checked]) -> list[str]:
    lines: list[str] = []
    for result in results:
        for problem in result.problems:
            lines.append(_line("error", result.where, problem.path, problem.message))
        for note in result.notes:
            lines.append(_line("note ", result.where, note.path, note.message))
        if result.canary is not None:
            lines.append(f"ok    {result.where}: Canary {result.canary}")
    valid = sum(r.canary is not None for r in results)
    invalid = sum(bool(r.problems) for r in results)
    errors = sum(len(r.problems) for r in results)
    summary = f"{valid} valid, {invalid} invalid"
    if errors:
        summary += f" ({errors} {'error' if errors == 1 else 'errors'})"
    lines.append(summary)
    return lines


def _json_report(results: list[Checked]) -> dict[str, Any]:
    def problems(items: tuple[Any, ...]) -> list[dict[str, str]]:
        return [{"path": p.path, "message": p.message} for p in items]

    return {
        "valid": all(not r.problems for r in results) and bool(results),
        "results": [
            {
                "file": r.source,
                "document": r.index,
                "canary": r.canary,
                "valid": not r.problems,
                "errors": problems(r.problems),
                "notes": problems(r.notes),
            }
            for r in results
        ],
    }


@app.command()
def validate(
    *,
    file: Annotated[
        list[str],
        typer.Option(
            "--file",
            "-f",
            help="A Canary file, a directory of them, or - for standard input (repeat).",
            show_default=False,
        ),
    ],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-R", help="Descend into directories.")
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Namespace of Canaries that name none; default: the kubeconfig context's.",
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="kubeconfig (env KUBECONFIG).")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context.")] = None,
    output: common.OutputOpt = common.Output.TEXT,
) -> None:
    """Check Canary documents; exit 0 when all are valid, 2 otherwise (a CI lint step).

    Multi-document YAML is read document by document; documents of other kinds are skipped.
    """
    try:
        settings = KubernetesSettings.from_env(kubeconfig=kubeconfig, context=context)
        placement = Placement.resolve(namespace, settings)
        results = [
            r for s in sources(file, recursive=recursive) for r in check_source(s, placement)
        ]
    except BadInputError as err:
        common.fail(str(err), err.exit_code)
    if not results:
        common.fail(f"no Canary found in {', '.join(file)}", EXIT_BAD_INPUT)
    console = common.stdout()
    if output == common.Output.JSON:
        console.print_json(json.dumps(_json_report(results)))
    else:
        for line in _text_report(results):
            console.print(line, markup=False)
    raise typer.Exit(EXIT_OK if all(not r.problems for r in results) else EXIT_BAD_INPUT)
