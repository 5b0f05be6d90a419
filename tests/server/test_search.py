"""A sweep's spec as Optuna's sampler, pruner and suggestions, with real Optuna in memory: each
distribution draws inside its space, a grid is covered once in a seeded order, a seeded draw is
the same however it is interrupted, and a pruned trial's reason carries its numbers."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from flowyard.server.services import search
from flowyard.sweepspec import SweepSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(**changes: Any) -> SweepSpec:
    data: dict[str, Any] = {
        "search_space": {
            "c": {"type": "choice", "values": ["a", "b"]},
            "u": {"type": "uniform", "low": -1, "high": 1},
            "q": {"type": "quniform", "low": 0, "high": 1, "q": 0.25},
            "l": {"type": "loguniform", "low": 0.001, "high": 10},
            "r": {"type": "randint", "low": 2, "high": 5},
            "n": {"type": "normal", "mu": 100, "sigma": 0.001},
        },
        "sampling": {"algorithm": "random", "seed": 1},
        "objective": {"metric": "loss"},
        "limits": {"max_trials": 20},
        **changes,
    }
    return SweepSpec.parse(data)


def _study(spec: SweepSpec) -> optuna.Study:
    return optuna.create_study(direction=spec.objective.goal.value, pruner=search.pruner(spec))


def _draw(study: optuna.Study, spec: SweepSpec, number: int) -> dict[str, str]:
    study.sampler = search.sampler(spec, number)
    return search.suggest(study.ask(), spec)


def test_every_distribution_draws_inside_its_space() -> None:
    spec = _spec()
    study = _study(spec)
    for number in range(20):
        values = _draw(study, spec, number)
        assert values["c"] in ("a", "b")
        assert -1 <= float(values["u"]) <= 1
        assert float(values["q"]) in (0, 0.25, 0.5, 0.75, 1)
        assert 0.001 <= float(values["l"]) <= 10
        assert values["r"] in ("2", "3", "4")
        assert abs(float(values["n"]) - 100) < 0.01


def test_a_seeded_draw_is_the_same_however_the_ticks_fall() -> None:
    spec = _spec()
    one = _study(spec)
    first = [_draw(one, spec, n) for n in range(5)]
    # Another controller (a restart) with the same history draws the same next trials.
    two = _study(spec)
    again = [_draw(two, spec, n) for n in range(5)]
    assert first == again
    assert len({v["u"] for v in first}) == 5  # and not one point over and over


def test_a_grid_is_covered_once_in_a_seeded_order() -> None:
    spec = _spec(
        search_space={
            "x": {"type": "choice", "values": [1, 2, 3]},
            "y": {"type": "quniform", "low": 0, "high": 1, "q": 0.5},
        },
        sampling={"algorithm": "grid", "seed": 4},
        limits={},
    )
    assert spec.limits.max_trials == 9
    study = _study(spec)
    points = [tuple(_draw(study, spec, n).values()) for n in range(9)]
    assert sorted(points) == sorted((str(x), str(y)) for x in (1, 2, 3) for y in (0.0, 0.5, 1.0))
    other = _study(spec)
    assert [tuple(_draw(other, spec, n).values()) for n in range(9)] == points


@pytest.mark.parametrize(
    ("policy", "kind"),
    [
        (None, optuna.pruners.NopPruner),
        ({"policy": "median"}, optuna.pruners.PercentilePruner),
        ({"policy": "truncation", "truncation_percentage": 30}, optuna.pruners.PercentilePruner),
        ({"policy": "bandit"}, optuna.pruners.SuccessiveHalvingPruner),
    ],
)
def test_each_policy_is_an_optuna_pruner(policy: Any, kind: type) -> None:
    assert isinstance(search.pruner(_spec(early_termination=policy)), kind)


def _finished(study: optuna.Study, curve: list[float]) -> None:
    trial = study.ask()
    for step, value in enumerate(curve):
        trial.report(value, step)
    study.tell(trial, curve[-1])


def test_the_median_policy_stops_a_lagging_trial_and_says_by_how_much() -> None:
    spec = _spec(early_termination={"policy": "median", "startup_trials": 3})
    study = _study(spec)
    for final in (0.5, 0.6, 0.7):
        _finished(study, [final + 1, final])
    lagging = study.ask()
    lagging.report(2.5, 0)
    assert lagging.should_prune()
    reason = search.explain_prune(spec, study, {0: 2.5}, 0)
    assert reason == "stopped early by median policy at step 0: 2.5 worse than median 1.6"
    # A good trial goes on.
    good = study.ask()
    good.report(1.1, 0)
    assert not good.should_prune()


def test_the_truncation_policy_names_its_share_and_cut_off() -> None:
    spec = _spec(
        objective={"metric": "acc", "goal": "maximize"},
        early_termination={"policy": "truncation", "truncation_percentage": 25,
                           "startup_trials": 1},
    )  # fmt: skip
    study = _study(spec)
    for final in (0.2, 0.4, 0.6, 0.8, 1.0):
        _finished(study, [final])
    trial = study.ask()
    trial.report(0.1, 0)
    assert trial.should_prune()
    reason = search.explain_prune(spec, study, {0: 0.1}, 0)
    assert reason == (
        "stopped early by truncation policy at step 0: 0.1 in the worst 25% of finished trials "
        "(cut-off 0.4)"
    )
