"""A sweep's spec as Optuna sees it: its study, sampler, pruner and suggestions, and why a pruner
stopped a trial, in words. Only this module and :mod:`flowyard.server.db.studies` import Optuna.

Every sampler is made for the trial it draws, seeded with the sweep's seed and the trial's
number: the same spec and results draw the same trials however the controller's ticks fall, and
a controller that restarts (or another that takes over) goes on where the first stopped instead
of drawing the first trials again.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from flowyard.sweepspec import Algorithm, Dimension, Distribution, Policy, SweepSpec

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage

# A normal dimension is drawn as its quantile: (0, 1) open at both ends, where inv_cdf is finite.
_QUANTILE_EDGE = 1e-9
# Trials TPE draws at random before it models the results (Optuna's default, less on a small
# budget so that most of a small sweep is still guided).
_TPE_STARTUP = 10


def study(storage: RDBStorage, name: str, spec: SweepSpec) -> optuna.Study:
    """The sweep's study, created on first use (any controller may be first)."""
    import optuna

    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction=spec.objective.goal.value,
        pruner=pruner(spec),
        load_if_exists=True,
    )


def sampler(spec: SweepSpec, number: int) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``number``."""
    import optuna

    seed = None if spec.sampling.seed is None else (spec.sampling.seed * 100_003 + number) % 2**32
    algorithm = spec.sampling.algorithm
    if algorithm == Algorithm.GRID:
        # The grid's order is shuffled once for the sweep (by its seed alone): trial n takes the
        # n-th point.
        return optuna.samplers.GridSampler(spec.grid(), seed=spec.sampling.seed)
    if algorithm == Algorithm.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        # constant_liar is "experimental" in Optuna: it keeps parallel trials from all drawing
        # the same point while the others run.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=min(_TPE_STARTUP, max(2, spec.limits.max_trials // 3)),
            constant_liar=True,
        )


def pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    import optuna

    early = spec.early_termination
    if early is None:
        return optuna.pruners.NopPruner()
    if early.policy == Policy.BANDIT:
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, early.delay_evaluation), reduction_factor=early.reduction_factor
        )
    return optuna.pruners.PercentilePruner(
        _percentile(spec),
        n_startup_trials=early.startup_trials,
        n_warmup_steps=early.delay_evaluation,
        interval_steps=early.evaluation_interval,
    )


def _percentile(spec: SweepSpec) -> float:
    """The percentile of finished trials a trial must be within to go on (Optuna's sense: 25 keeps
    the best quarter)."""
    early = spec.early_termination
    assert early is not None
    return 50.0 if early.policy == Policy.MEDIAN else 100.0 - early.truncation_percentage


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, str]:
    """Draw (or, for a trial drawn before, read back) every parameter; the job's parameters."""
    drawn = {name: _draw(trial, name, d) for name, d in spec.search_space.items()}
    return spec.parameter_values(drawn)


def _draw(trial: optuna.Trial, name: str, dimension: Dimension) -> Any:
    low, high = dimension.low, dimension.high
    kind = dimension.type
    if kind == Distribution.CHOICE:
        return trial.suggest_categorical(name, list(dimension.values))
    if kind == Distribution.NORMAL:
        return trial.suggest_float(name, _QUANTILE_EDGE, 1 - _QUANTILE_EDGE)
    assert low is not None and high is not None
    if kind == Distribution.RANDINT:
        return trial.suggest_int(name, int(low), int(high) - 1)
    if kind == Distribution.QUNIFORM:
        return trial.suggest_float(name, low, dimension.last(), step=dimension.q)
    return trial.suggest_float(name, low, high, log=kind == Distribution.LOGUNIFORM)


def live_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.Trial:
    """A trial drawn before (by this process or another), to draw its missing parameters or
    report its steps, as ``study.ask()`` would have handed it out. Optuna has no public way to
    reopen a running trial: its ``Trial`` is built from the trial's storage id as ``ask`` does."""
    import optuna

    return optuna.Trial(study, frozen._trial_id)


def state(name: str) -> optuna.trial.TrialState:
    from optuna.trial import TrialState

    return TrialState[name]


def explain_prune(
    spec: SweepSpec, study: optuna.Study, reported: dict[int, float], step: int
) -> str:
    """Why the pruner stopped a trial that ``reported`` these values, at ``step``: its numbers
    against the others'."""
    from optuna.trial import TrialState

    early = spec.early_termination
    assert early is not None
    values = list(reported.values())
    best = min(values) if spec.objective.minimize else max(values)
    head = f"stopped early by {early.policy} policy at step {step}: {best:.4g}"
    if early.policy == Policy.BANDIT:
        return (
            f"{head} not in the best 1/{early.reduction_factor} of the trials that reached "
            "this rung"
        )
    finished = [
        t.intermediate_values[step]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if step in t.intermediate_values
    ]
    percentile = _percentile(spec)
    if not spec.objective.minimize:
        percentile = 100 - percentile
    cut = float(np.nanpercentile(np.array(finished, dtype=float), percentile))
    if math.isnan(cut):
        return head
    if early.policy == Policy.MEDIAN:
        return f"{head} worse than median {cut:.4g}"
    return (
        f"{head} in the worst {early.truncation_percentage:g}% of finished trials "
        f"(cut-off {cut:.4g})"
    )
