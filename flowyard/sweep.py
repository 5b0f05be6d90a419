"""A sweep as the SDK and the CLI show it: its trials as rows sorted by the objective, and the
line that says how it ended and which trial was best."""

from __future__ import annotations

from collections import Counter

from flowyard.schemas import SweepOut, TrialOut

TRIAL_HEADER = ("trial", "run", "status", "value", "step", "parameters", "why it ended")


def _value(trial: TrialOut) -> str:
    return "" if trial.value is None else f"{trial.value:.6g}"


def trial_rows(sweep: SweepOut) -> list[tuple[str, ...]]:
    """One row per trial, best first (the workspace sorts them by the objective)."""
    return [
        (
            str(t.number),
            t.run_id,
            t.status.value if t.state != "pruned" else "stopped early",
            _value(t),
            "" if t.last_step is None else str(t.last_step),
            ", ".join(f"{k}={v}" for k, v in t.parameters.items()),
            t.reason or "" if t.status.is_final else "",
        )
        for t in sweep.trials
    ]


def summary(sweep: SweepOut) -> str:
    """How many trials went how, and the best so far."""
    metric = str(sweep.spec["objective"]["metric"])
    states = Counter(t.state for t in sweep.trials)
    limit = sweep.spec["limits"]["max_trials"]
    parts = [f"{len(sweep.trials)} of {limit} trials"]
    for state, word in (
        ("complete", "completed"),
        ("pruned", "stopped early"),
        ("fail", "failed"),
        ("running", "running"),
    ):
        if states[state]:
            parts.append(f"{states[state]} {word}")
    line = f"Sweep {sweep.job.run_id} {sweep.job.status}: {', '.join(parts)}."
    best = next((t for t in sweep.trials if t.run_id == sweep.best_trial_id), None)
    if best is not None:
        shown = ", ".join(f"{k}={v}" for k, v in best.parameters.items())
        line += (
            f"\nBest: trial {best.number} (run {best.run_id}) {metric}={_value(best)} with {shown}."
        )
    elif sweep.job.status.is_final:
        line += f"\nNo trial logged {metric!r}."
    return line
