"""A sweep's spec: every distribution, sampling, objective, limits and policy read and checked,
each mistake refused in one sentence that names the key and the fix, and one JSON form that
reads back as it was."""

from __future__ import annotations

from typing import Any

import pytest

from flowyard.errors import InvalidRequestError
from flowyard.sweepspec import (
    Algorithm,
    Dimension,
    Distribution,
    Goal,
    Policy,
    SweepSpec,
)

FULL: dict[str, Any] = {
    "search_space": {
        "kernel": {"type": "choice", "values": ["rbf", "linear", 3, True]},
        "x": {"type": "uniform", "low": -5, "high": 5},
        "step": {"type": "quniform", "low": 0, "high": 1, "q": 0.1},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "layers": {"type": "randint", "low": 1, "high": 4},
        "noise": {"type": "normal", "mu": 0, "sigma": 2},
    },
    "sampling": {"algorithm": "bayesian", "seed": 7},
    "objective": {"metric": "loss", "goal": "minimize"},
    "limits": {
        "max_trials": 30,
        "max_concurrent_trials": 4,
        "max_failed_trials": 3,
        "timeout": 600,
    },
    "early_termination": {"policy": "median", "evaluation_interval": 2, "delay_evaluation": 5},
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**FULL, **changes}


def _refused(data: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        SweepSpec.parse(data)
    message = caught.value.message
    # One sentence: ends once, with a full stop.
    assert message.endswith(".") and ". " not in message.rstrip("."), message
    return message


def test_a_full_spec_reads_every_part() -> None:
    spec = SweepSpec.parse(FULL)
    assert spec.search_space["kernel"] == Dimension(
        type=Distribution.CHOICE, values=("rbf", "linear", 3, True)
    )
    assert spec.search_space["lr"].low == 1e-4 and spec.search_space["lr"].high == 0.1
    assert spec.search_space["layers"].points() == [1, 2, 3]
    assert spec.search_space["step"].points() == [i / 10 for i in range(11)]
    assert spec.sampling.algorithm == Algorithm.BAYESIAN and spec.sampling.seed == 7
    assert spec.objective.goal == Goal.MINIMIZE and spec.objective.minimize
    assert spec.limits.max_trials == 30 and spec.limits.max_concurrent_trials == 4
    assert spec.limits.max_failed_trials == 3 and spec.limits.timeout == 600
    early = spec.early_termination
    assert early is not None and early.policy == Policy.MEDIAN
    assert (early.evaluation_interval, early.delay_evaluation) == (2, 5)


def test_the_json_form_reads_back_as_it_was() -> None:
    spec = SweepSpec.parse(FULL)
    again = SweepSpec.from_json(spec.to_json())
    assert again == spec
    # Only the fields a dimension's type has are written.
    assert spec.to_json()["search_space"]["x"] == {"type": "uniform", "low": -5.0, "high": 5.0}
    # And the stored form is itself a valid spec.
    assert SweepSpec.parse(spec.to_json()) == spec


def test_defaults_short_forms_and_a_grid_that_sizes_itself() -> None:
    spec = SweepSpec.parse(
        {
            "search_space": {
                "a": {"type": "choice", "values": [1, 2, 3]},
                "b": {"type": "randint", "high": 2},
            },
            "sampling": "grid",
            "objective": {"metric": "acc", "goal": "maximize"},
            "early_termination": "bandit",
        }
    )
    assert spec.sampling.algorithm == Algorithm.GRID and spec.sampling.seed is None
    assert spec.grid() == {"a": [1, 2, 3], "b": [0, 1]}
    assert spec.grid_size == 6 and spec.limits.max_trials == 6
    assert not spec.objective.minimize
    assert spec.early_termination is not None
    assert spec.early_termination.reduction_factor == 3
    # A grid is covered once: a bigger max_trials is cut to the grid.
    bigger = {**spec.to_json(), "limits": {"max_trials": 50}}
    assert SweepSpec.parse(bigger).limits.max_trials == 6


def test_a_trials_parameters_are_text_as_mlflow_passes_them() -> None:
    spec = SweepSpec.parse(FULL)
    drawn = {
        "kernel": True,
        "x": 0.1 + 0.2,
        "step": 0.30000000000000004,
        "lr": 0.001,
        "layers": 2,
        "noise": 0.5,
    }
    values = spec.parameter_values(drawn)
    assert values == {
        "kernel": "True",
        "x": "0.3",
        "step": "0.3",
        "lr": "0.001",
        "layers": "2",
        "noise": "0.0",
    }
    # A normal dimension's value is its quantile's: the median is mu, one sigma up is ~84%.
    assert spec.parameter_values({**drawn, "noise": 0.8413447})["noise"].startswith("1.99999")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "spec must be a mapping"),
        (_with(searchspace={}), "unknown key(s) searchspace"),
        (_with(search_space={}), "needs a search_space naming at least one parameter"),
        (_with(search_space={"x": {"type": "gauss"}}), "search_space.x has type 'gauss'"),
        (_with(search_space={"x;rm -rf ~": {"type": "uniform"}}), "names the parameter 'x;rm"),
        (_with(search_space={"x": {"type": "uniform", "low": 0}}), "needs high, like"),
        (_with(search_space={"x": {"type": "uniform", "low": 1, "high": 0}}), "low < high"),
        (
            _with(search_space={"x": {"type": "uniform", "low": "a", "high": 1}}),
            "x.low must be a number",
        ),
        (
            _with(search_space={"x": {"type": "uniform", "low": 0, "high": 1, "q": 1}}),
            "unknown key(s) q",
        ),
        (_with(search_space={"x": {"type": "loguniform", "low": 0, "high": 1}}), "low over 0"),
        (_with(search_space={"x": {"type": "quniform", "low": 0, "high": 1, "q": 0}}), "q over 0"),
        (
            _with(search_space={"x": {"type": "quniform", "low": 0, "high": 1, "q": 2}}),
            "wider than its range",
        ),
        (
            _with(search_space={"x": {"type": "randint", "low": 0.5, "high": 3}}),
            "whole low and high",
        ),
        (_with(search_space={"x": {"type": "normal", "mu": 0, "sigma": 0}}), "sigma over 0"),
        (_with(search_space={"x": {"type": "choice", "values": []}}), "at least one value"),
        (_with(search_space={"x": {"type": "choice", "values": [1, 1]}}), "lists a value twice"),
        (
            _with(search_space={"x": {"type": "choice", "values": [[1]]}}),
            "strings, numbers or booleans",
        ),
        (_with(sampling={"algorithm": "tpe"}), "sampling.algorithm is 'tpe'"),
        (_with(sampling={"algorithm": "random", "seed": -1}), "seed must be a whole number"),
        (_with(sampling="grid"), "Grid sampling cannot list every value of search_space.x"),
        (_with(objective=None), "needs an objective"),
        (_with(objective={"metric": ""}), "objective.metric must name the metric"),
        (_with(objective={"metric": "loss", "goal": "lowest"}), "use minimize or maximize"),
        (_with(limits={}), "limits.max_trials is needed"),
        (_with(limits={"max_trials": 0}), "whole number of 1 or more"),
        (_with(limits={"max_trials": 10**6}), "split it into several sweeps"),
        (_with(limits={"max_trials": 5, "timeout": 0}), "timeout must be seconds over 0"),
        (
            _with(limits={"max_trials": 5, "max_concurrent_trials": 0}),
            "max_concurrent_trials must be",
        ),
        (_with(early_termination={"policy": "hyperdrive"}), "policy is 'hyperdrive'"),
        (
            _with(early_termination={"policy": "median", "reduction_factor": 2}),
            "does not apply to the median policy",
        ),
        (
            _with(early_termination={"policy": "truncation", "truncation_percentage": 100}),
            "between 0 and 100",
        ),
        (_with(early_termination={"policy": "bandit", "reduction_factor": 1}), "2 or more"),
        (_with(early_termination={"policy": "median", "evaluation_interval": 0}), "1 or more"),
    ],
)
def test_each_mistake_is_one_sentence_naming_the_key(data: Any, words: str) -> None:
    assert words in _refused(data)


def test_a_grid_too_big_to_run_is_refused() -> None:
    dimension = {"type": "randint", "low": 0, "high": 1000}
    data = _with(sampling="grid", search_space={"a": dimension, "b": dimension})
    assert "1000000 points" in _refused(data)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        # Counted, never listed: a range of 10**15 points is refused at once.
        (
            _with(sampling="grid", search_space={"a": {"type": "randint", "high": 10**15}}),
            "1000000000000000 points",
        ),
        (
            _with(
                sampling="grid",
                search_space={"a": {"type": "quniform", "low": 0, "high": 1e9, "q": 1e-6}},
            ),
            "points, over the",
        ),
        (
            _with(search_space={"a": {"type": "uniform", "low": -1e308, "high": 1e308}}),
            "wider than a float holds",
        ),
        (
            _with(search_space={"a": {"type": "quniform", "low": 0, "high": 1e300, "q": 1e-300}}),
            "too small for its range",
        ),
        (_with(sampling={"algorithm": "random", "seed": 2**40}), "seed must be at most"),
        (_with(limits={"max_trials": 5, "timeout": 1e300}), "at most 31536000 (a year)"),
        (_with(limits={"max_trials": 5, "max_concurrent_trials": 10**12}), "at most 10000"),
    ],
)
def test_a_hostile_spec_is_refused_without_working_through_it(data: Any, words: str) -> None:
    assert words in _refused(data)


def test_a_space_must_fit_the_entry_points_parameter_types() -> None:
    spec = SweepSpec.parse(FULL)
    spec.check_types({"layers": "int", "x": "float", "kernel": "string", "lr": "float"})
    with pytest.raises(InvalidRequestError, match="'x' is an int in the MLproject"):
        spec.check_types({"x": "int"})
    with pytest.raises(InvalidRequestError, match="offers 'rbf'; offer numbers only"):
        spec.check_types({"kernel": "float"})
    ints = SweepSpec.parse(_with(search_space={"n": {"type": "choice", "values": [1, 2]}}))
    ints.check_types({"n": "int"})
