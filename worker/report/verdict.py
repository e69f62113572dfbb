"""Why a rollout ended as it did: the decisive data point behind a rollback.

The workflow's failure message is the rollback reason in Flagger's words ("Rolling back
podinfo.test failed checks threshold reached 3"); the report adds what made it so: the last
failed check before the rollback (its value against its range, the weight it was judged at), the
operator who aborted, or the rollback webhook that answered.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.report.model import Action, CheckPoint, Decisive, Outcome, WebhookCall


def decisive_of(
    outcome: Outcome,
    message: str,
    checks: Sequence[CheckPoint],
    webhooks: Sequence[WebhookCall],
    actions: Sequence[Action],
) -> Decisive | None:
    """The data point that decided a rollback; None for any other outcome."""
    if outcome != Outcome.ROLLED_BACK:
        return None
    if " aborted by " in message:
        abort = next((a for a in reversed(actions) if a.action == "abort"), None)
        if abort is not None:
            return Decisive(
                kind="operator",
                name=abort.identity,
                message=f"aborted by {abort.identity}: {abort.reason or 'no reason given'}",
                time=abort.time,
            )
    if "manual webhook invoked" in message:
        hook = next((w for w in reversed(webhooks) if w.type == "rollback" and w.ok), None)
        if hook is not None:
            return Decisive(
                kind="webhook",
                name=hook.name,
                message=f"rollback webhook {hook.name} answered {hook.status_code or 'ok'}",
                time=hook.time,
            )
    if "progress deadline exceeded" in message:
        detail = message.split("progress deadline exceeded", 1)[1].strip()
        return Decisive(kind="deadline", name="progress deadline", message=detail or message)
    return _last_failed_check(checks, webhooks)


def _last_failed_check(
    checks: Sequence[CheckPoint], webhooks: Sequence[WebhookCall]
) -> Decisive | None:
    metric = next((c for c in reversed(checks) if not c.passed), None)
    hook = next(
        (w for w in reversed(webhooks) if not w.ok and w.type in ("rollout", "pre-rollout")), None
    )
    if hook is not None and (metric is None or hook.time > metric.time):
        return Decisive(
            kind="webhook",
            name=hook.name,
            message=f"{hook.type} webhook {hook.name} failed: {hook.message}".rstrip(": "),
            time=hook.time,
        )
    if metric is None:
        return None
    return Decisive(
        kind="metric",
        name=metric.name,
        message=metric.message or f"{metric.name} {metric.outcome}",
        time=metric.time,
        weight=metric.weight,
        value=metric.value,
        min=metric.min,
        max=metric.max,
    )


def headline(outcome: Outcome, display: str) -> str:
    """``podinfo.test promoted`` / ``podinfo.test rolled back`` / ``… running``."""
    return f"{display} {outcome.value}"
