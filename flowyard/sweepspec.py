"""A sweep's spec: the search space, how it is sampled, the objective, the limits and the early
termination policy, as frozen values checked once, with one sentence naming what to fix.

The same spec comes from ``backend_config={"SWEEP": {...}}``, from ``flowyard sweep SPEC.yaml``
and from the API; the workspace stores it (``flowyard_sweeps.spec``) and its sweep controller
turns it into Optuna's samplers and pruners (``flowyard.server.services.sweeps``). Nothing here
imports Optuna: the client side checks a spec before anything is uploaded.

    search_space:
      alpha: {type: loguniform, low: 0.0001, high: 1}
      layers: {type: choice, values: [1, 2, 3]}
    sampling: {algorithm: bayesian, seed: 7}
    objective: {metric: loss, goal: minimize}
    limits: {max_trials: 30, max_concurrent_trials: 4, max_failed_trials: 3, timeout: 3600}
    early_termination: {policy: median, evaluation_interval: 1, delay_evaluation: 5}
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flowyard.errors import InvalidRequestError
from flowyard.jobspec import _Json, _plain

# What a choice may offer: the values an MLproject parameter can take.
Choice = str | int | float | bool
# Past this many points a grid is a mistake (a float range meant as choice), not a search.
MAX_GRID = 100_000
# A sweep of more trials than this is a typo; split it into several sweeps.
MAX_TRIALS = 10_000
# What a seed may be (Optuna's samplers seed NumPy, which takes 32 bits).
MAX_SEED = 2**31 - 1
# A year: a longer timeout is a typo (and past Python's timedelta, an error).
MAX_TIMEOUT_S = 365 * 24 * 3600
# A searched parameter's name: MLflow passes a parameter the MLproject does not declare as
# `--NAME value` unquoted, so a name is a plain word, never shell text.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


class Distribution(StrEnum):
    """How one parameter's values are drawn (HyperDrive's names)."""

    CHOICE = "choice"  # one of `values`
    UNIFORM = "uniform"  # a float in [low, high]
    QUNIFORM = "quniform"  # low, low + q, ..., up to high
    LOGUNIFORM = "loguniform"  # a float in [low, high], uniform in its logarithm (0 < low)
    RANDINT = "randint"  # an integer in [low, high) (low defaults to 0)
    NORMAL = "normal"  # a float from the normal distribution of mean mu, deviation sigma


class Algorithm(StrEnum):
    GRID = "grid"
    RANDOM = "random"
    BAYESIAN = "bayesian"  # Optuna's tree-structured Parzen estimator (TPE)


class Goal(StrEnum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class Policy(StrEnum):
    """Early termination: which Optuna pruner stops a trial before its last step."""

    MEDIAN = "median"  # worse than the median of finished trials at the same step
    TRUNCATION = "truncation"  # in the worst truncation_percentage at the same step
    BANDIT = "bandit"  # asynchronous successive halving: only the best 1/reduction_factor go on


_FIELDS: dict[Distribution, tuple[str, ...]] = {
    Distribution.CHOICE: ("values",),
    Distribution.UNIFORM: ("low", "high"),
    Distribution.QUNIFORM: ("low", "high", "q"),
    Distribution.LOGUNIFORM: ("low", "high"),
    Distribution.RANDINT: ("low", "high"),
    Distribution.NORMAL: ("mu", "sigma"),
}
_EXAMPLE: dict[Distribution, str] = {
    Distribution.CHOICE: "{type: choice, values: [1, 2, 3]}",
    Distribution.UNIFORM: "{type: uniform, low: 0, high: 1}",
    Distribution.QUNIFORM: "{type: quniform, low: 0, high: 10, q: 2}",
    Distribution.LOGUNIFORM: "{type: loguniform, low: 0.0001, high: 1}",
    Distribution.RANDINT: "{type: randint, low: 0, high: 10}",
    Distribution.NORMAL: "{type: normal, mu: 0, sigma: 1}",
}


def _refuse(message: str) -> InvalidRequestError:
    return InvalidRequestError(message)


def _mapping(where: str, value: Any, example: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _refuse(f"The sweep's {where} must be a mapping, like {where}: {example}.")
    return value


def _known(where: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        raise _refuse(
            f"The sweep's {where} has unknown key(s) {', '.join(unknown)}; "
            f"its keys are {', '.join(known)}."
        )


def _real(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _refuse(f"The sweep's {where} must be a number, not {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise _refuse(f"The sweep's {where} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise _refuse(f"The sweep's {where} must be a finite number, not {value!r}.")
    return number


def _whole(where: str, value: Any, least: int) -> int:
    number = _real(where, value)
    if not number.is_integer() or number < least:
        raise _refuse(
            f"The sweep's {where} must be a whole number of {least} or more, not {value!r}."
        )
    return int(number)


@dataclass(frozen=True)
class Dimension(_Json):
    """One parameter's search space. Only the fields its ``type`` names are set."""

    type: Distribution
    values: tuple[Choice, ...] = ()
    low: float | None = None
    high: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None

    @classmethod
    def parse(cls, name: str, data: Any) -> Dimension:
        where = f"search_space.{name}"
        spec = _mapping(where, data, _EXAMPLE[Distribution.UNIFORM])
        kind = spec.get("type")
        if kind not in set(Distribution):
            raise _refuse(
                f"The sweep's {where} has type {kind!r}; use one of "
                f"{', '.join(Distribution)} (like {where}: {_EXAMPLE[Distribution.UNIFORM]})."
            )
        kind = Distribution(kind)
        fields = _FIELDS[kind]
        _known(where, spec, ("type", *fields))
        needed = [f for f in fields if f not in spec and not (kind == "randint" and f == "low")]
        if needed:
            raise _refuse(
                f"The sweep's {where} ({kind}) needs {' and '.join(needed)}, like "
                f"{where}: {_EXAMPLE[kind]}."
            )
        if kind == Distribution.CHOICE:
            values = spec["values"]
            if not isinstance(values, list | tuple) or not values:
                raise _refuse(
                    f"The sweep's {where} must list at least one value, like "
                    f"{where}: {_EXAMPLE[kind]}."
                )
            for value in values:
                if not isinstance(value, str | int | float | bool):
                    raise _refuse(
                        f"The sweep's {where} offers {value!r}; a choice's values must be "
                        "strings, numbers or booleans (what a parameter can be)."
                    )
            if len({(type(v), v) for v in values}) != len(values):
                raise _refuse(f"The sweep's {where} lists a value twice; list each value once.")
            return cls(type=kind, values=tuple(values))
        numbers = {f: _real(f"{where}.{f}", spec[f]) if f in spec else 0.0 for f in fields}
        get = numbers.get
        return cls(
            type=kind,
            low=get("low"),
            high=get("high"),
            q=get("q"),
            mu=get("mu"),
            sigma=get("sigma"),
        )

    def __post_init__(self) -> None:
        low, high = self.low, self.high
        if self.type == Distribution.NORMAL:
            if not (self.sigma is not None and self.sigma > 0):
                raise _refuse(f"A normal search space needs sigma over 0, not {self.sigma}.")
            return
        if self.type == Distribution.CHOICE or low is None or high is None:
            return
        if not low < high:
            raise _refuse(
                f"A {self.type} search space needs low < high, not low={low:g}, high={high:g}; "
                "swap them or widen the range."
            )
        if not math.isfinite(high - low):
            raise _refuse(
                f"A {self.type} search space from {low:g} to {high:g} is wider than a float "
                "holds; narrow it."
            )
        if self.type == Distribution.LOGUNIFORM and low <= 0:
            raise _refuse(
                f"A loguniform search space needs a low over 0, not {low:g}; its values are "
                "spread evenly in their logarithm."
            )
        if self.type == Distribution.RANDINT and not (low.is_integer() and high.is_integer()):
            raise _refuse(
                f"A randint search space needs whole low and high, not {low:g} and {high:g}."
            )
        if self.type == Distribution.QUNIFORM:
            if not (self.q is not None and self.q > 0):
                raise _refuse(f"A quniform search space needs q over 0, not {self.q}.")
            if not math.isfinite((high - low) / self.q):
                raise _refuse(
                    f"A quniform search space's q ({self.q:g}) is too small for its range; "
                    "use a larger q."
                )
            if self.q > high - low:
                raise _refuse(
                    f"A quniform search space's q ({self.q:g}) is wider than its range "
                    f"{low:g}..{high:g}; use a smaller q."
                )

    def example(self) -> Choice:
        """A value of the space (to check an entry point's parameter types with)."""
        if self.type == Distribution.CHOICE:
            return self.values[0]
        if self.type == Distribution.NORMAL:
            assert self.mu is not None
            return self.mu
        assert self.low is not None
        return int(self.low) if self.type == Distribution.RANDINT else self.low

    @property
    def finite(self) -> bool:
        """Whether grid sampling can list every value."""
        return self.type in (Distribution.CHOICE, Distribution.QUNIFORM, Distribution.RANDINT)

    def count(self) -> int:
        """How many values a finite dimension has, worked out without listing them (a hostile
        spec's range may be astronomically long)."""
        if self.type == Distribution.CHOICE:
            return len(self.values)
        assert self.low is not None and self.high is not None
        if self.type == Distribution.RANDINT:
            return int(self.high) - int(self.low)
        assert self.type == Distribution.QUNIFORM and self.q is not None
        return math.floor((self.high - self.low) / self.q + 1e-9) + 1

    def last(self) -> float:
        """A quniform dimension's highest value."""
        assert self.type == Distribution.QUNIFORM
        assert self.low is not None and self.q is not None
        return _tidy(self.low + (self.count() - 1) * self.q)

    def points(self) -> list[Choice]:
        """Every value, for grid sampling (choice, quniform and randint only; the caller
        checks :meth:`count` first)."""
        if self.type == Distribution.CHOICE:
            return list(self.values)
        assert self.low is not None and self.high is not None
        if self.type == Distribution.RANDINT:
            return list(range(int(self.low), int(self.high)))
        assert self.type == Distribution.QUNIFORM and self.q is not None
        return [_tidy(self.low + i * self.q) for i in range(self.count())]

    def normal_value(self, quantile: float) -> float:
        """A normal dimension's value at ``quantile`` (Optuna draws the quantile, uniformly, in
        (0, 1): it has no normal distribution of its own)."""
        assert self.mu is not None and self.sigma is not None
        return statistics.NormalDist(self.mu, self.sigma).inv_cdf(quantile)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Dimension:
        return cls(
            type=Distribution(data["type"]),
            values=tuple(data.get("values") or ()),
            **{k: data.get(k) for k in ("low", "high", "q", "mu", "sigma")},
        )


def _tidy(value: float) -> float:
    """``value`` without the float noise that stepping by q adds (0.30000000000000004)."""
    return float(f"{value:.12g}")


@dataclass(frozen=True)
class Sampling(_Json):
    algorithm: Algorithm = Algorithm.RANDOM
    # The same seed, space and results give the same trials; None: a new draw every sweep.
    seed: int | None = None


@dataclass(frozen=True)
class Objective(_Json):
    # The metric every trial logs (mlflow.log_metric), the last value of which is its result.
    metric: str
    goal: Goal = Goal.MINIMIZE

    @property
    def minimize(self) -> bool:
        return self.goal == Goal.MINIMIZE


@dataclass(frozen=True)
class Limits(_Json):
    max_trials: int
    # None: as many at once as the compute has slots (and one more queued, to fill a freed slot
    # at once).
    max_concurrent_trials: int | None = None
    # The sweep fails once this many trials failed; None: it never fails for its trials.
    max_failed_trials: int | None = None
    # Seconds from the sweep's start: then its running trials are canceled and it ends.
    timeout: float | None = None


@dataclass(frozen=True)
class EarlyTermination(_Json):
    policy: Policy
    # Consider stopping a trial every this many steps of the objective metric.
    evaluation_interval: int = 1
    # Never stop a trial before this step.
    delay_evaluation: int = 0
    # median and truncation: trials that must have finished before any trial is stopped.
    startup_trials: int = 3
    # truncation: the percentage of trials, the worst at a step, that are stopped.
    truncation_percentage: float = 20.0
    # bandit: at each rung only the best 1/reduction_factor of trials go on.
    reduction_factor: int = 3

    def describe(self) -> str:
        return f"{self.policy} policy"


_TOP = ("search_space", "sampling", "objective", "limits", "early_termination")
_POLICY_FIELDS: dict[Policy, tuple[str, ...]] = {
    Policy.MEDIAN: ("startup_trials",),
    Policy.TRUNCATION: ("startup_trials", "truncation_percentage"),
    Policy.BANDIT: ("reduction_factor",),
}


@dataclass(frozen=True)
class SweepSpec(_Json):
    """A whole sweep, checked: build one with :meth:`parse`."""

    search_space: dict[str, Dimension]
    objective: Objective
    limits: Limits
    sampling: Sampling = field(default_factory=Sampling)
    early_termination: EarlyTermination | None = None

    @property
    def grid_size(self) -> int:
        return math.prod(d.count() for d in self.search_space.values())

    def grid(self) -> dict[str, list[Choice]]:
        return {name: d.points() for name, d in self.search_space.items()}

    def check_types(self, declared: Mapping[str, str]) -> None:
        """Refuse a space whose values an entry point's parameter (``declared``: its MLproject
        types by name) cannot take.

        Raises:
            InvalidRequestError: naming the parameter and the fix.
        """
        for name, dimension in self.search_space.items():
            kind = declared.get(name)
            values = dimension.values
            if kind == "int" and not (
                dimension.type == Distribution.RANDINT
                or (
                    dimension.type == Distribution.CHOICE
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
                )
            ):
                raise _refuse(
                    f"Parameter {name!r} is an int in the MLproject, but search_space.{name} is "
                    f"{dimension.type}; make it randint or a choice of integers."
                )
            if kind == "float" and dimension.type == Distribution.CHOICE:
                for value in values:
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise _refuse(
                            f"Parameter {name!r} is a float in the MLproject, but "
                            f"search_space.{name} offers {value!r}; offer numbers only."
                        )

    def parameter_values(self, drawn: Mapping[str, Any]) -> dict[str, str]:
        """A trial's parameters as its job gets them (MLflow passes parameters as text), from
        what Optuna drew (a normal dimension's quantile becomes its value)."""
        values: dict[str, str] = {}
        for name, dimension in self.search_space.items():
            value = drawn[name]
            if dimension.type == Distribution.NORMAL:
                value = dimension.normal_value(float(value))
            if isinstance(value, float):
                value = int(value) if dimension.type == Distribution.RANDINT else _tidy(value)
            values[name] = str(value)
        return values

    @classmethod
    def parse(cls, data: Any) -> SweepSpec:
        """Read and check a spec (a dict, as YAML or JSON gives it).

        Raises:
            InvalidRequestError: one sentence naming the key and the fix.
        """
        spec = _mapping("spec", data, "{search_space: ..., objective: ..., limits: ...}")
        _known("spec", spec, _TOP)
        space = spec.get("search_space")
        if not isinstance(space, Mapping) or not space:
            raise _refuse(
                "The sweep needs a search_space naming at least one parameter, like "
                f"search_space: {{alpha: {_EXAMPLE[Distribution.UNIFORM]}}}."
            )
        for name in space:
            if not (isinstance(name, str) and NAME.match(name)):
                raise _refuse(
                    f"The sweep's search_space names the parameter {str(name)[:100]!r}; a "
                    "parameter's name starts with a letter or underscore and has only letters, "
                    "digits, underscores, dots and dashes; rename it."
                )
        dimensions = {str(name): Dimension.parse(str(name), d) for name, d in space.items()}
        sampling = _sampling(spec.get("sampling", {}))
        objective = _objective(spec.get("objective"))
        if sampling.algorithm == Algorithm.GRID:
            for name, dimension in dimensions.items():
                if not dimension.finite:
                    raise _refuse(
                        f"Grid sampling cannot list every value of search_space.{name} "
                        f"({dimension.type}); make it choice, quniform or randint, or use "
                        "sampling: random or bayesian."
                    )
        grid = (
            math.prod(d.count() for d in dimensions.values())
            if sampling.algorithm == Algorithm.GRID
            else None
        )
        if grid is not None and grid > MAX_GRID:
            raise _refuse(
                f"The grid has {grid} points, over the {MAX_GRID} a sweep may have; coarsen "
                "its quniform steps or use sampling: random."
            )
        limits = _limits(spec.get("limits", {}), grid)
        return cls(
            search_space=dimensions,
            objective=objective,
            limits=limits,
            sampling=sampling,
            early_termination=_early(spec.get("early_termination")),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SweepSpec:
        early = data.get("early_termination")
        return cls(
            search_space={k: Dimension.from_json(v) for k, v in data["search_space"].items()},
            objective=Objective(
                metric=str(data["objective"]["metric"]),
                goal=Goal(data["objective"].get("goal", Goal.MINIMIZE)),
            ),
            limits=Limits(**data["limits"]),
            sampling=Sampling(
                algorithm=Algorithm(data.get("sampling", {}).get("algorithm", Algorithm.RANDOM)),
                seed=data.get("sampling", {}).get("seed"),
            ),
            early_termination=None
            if early is None
            else EarlyTermination(**{**early, "policy": Policy(early["policy"])}),
        )

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = _plain(
            {
                "search_space": {k: _dimension_json(d) for k, d in self.search_space.items()},
                "objective": self.objective.to_json(),
                "limits": self.limits.to_json(),
                "sampling": self.sampling.to_json(),
                "early_termination": _early_json(self.early_termination),
            }
        )
        return result


def _dimension_json(dimension: Dimension) -> dict[str, Any]:
    """Only the fields the dimension's type has (a spec reads back as it was written)."""
    data = dimension.to_json()
    return {k: v for k, v in data.items() if k == "type" or k in _FIELDS[dimension.type]}


def _early_json(early: EarlyTermination | None) -> dict[str, Any] | None:
    """Only the fields the policy has."""
    if early is None:
        return None
    own = ("policy", "evaluation_interval", "delay_evaluation", *_POLICY_FIELDS[early.policy])
    return {k: v for k, v in early.to_json().items() if k in own}


def _sampling(data: Any) -> Sampling:
    if isinstance(data, str):
        data = {"algorithm": data}
    spec = _mapping("sampling", data, "{algorithm: bayesian, seed: 7}")
    _known("sampling", spec, ("algorithm", "seed"))
    algorithm = spec.get("algorithm", Algorithm.RANDOM)
    if algorithm not in set(Algorithm):
        raise _refuse(
            f"The sweep's sampling.algorithm is {algorithm!r}; use one of {', '.join(Algorithm)}."
        )
    seed = spec.get("seed")
    number = None if seed is None else _whole("sampling.seed", seed, 0)
    if number is not None and number > MAX_SEED:
        raise _refuse(f"The sweep's sampling.seed must be at most {MAX_SEED}, not {seed!r}.")
    return Sampling(algorithm=Algorithm(algorithm), seed=number)


def _objective(data: Any) -> Objective:
    example = "{metric: loss, goal: minimize}"
    if data is None:
        raise _refuse(
            f"The sweep needs an objective: the metric its trials log and whether to minimize "
            f"or maximize it, like objective: {example}."
        )
    spec = _mapping("objective", data, example)
    _known("objective", spec, ("metric", "goal"))
    metric = spec.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise _refuse(
            f"The sweep's objective.metric must name the metric its trials log, like "
            f"objective: {example}."
        )
    goal = spec.get("goal", Goal.MINIMIZE)
    if goal not in set(Goal):
        raise _refuse(f"The sweep's objective.goal is {goal!r}; use minimize or maximize.")
    return Objective(metric=metric.strip(), goal=Goal(goal))


def _limits(data: Any, grid: int | None) -> Limits:
    spec = _mapping("limits", data, "{max_trials: 20, max_concurrent_trials: 4}")
    _known("limits", spec, ("max_trials", "max_concurrent_trials", "max_failed_trials", "timeout"))
    if "max_trials" in spec:
        max_trials = _whole("limits.max_trials", spec["max_trials"], 1)
    elif grid is not None:
        max_trials = grid
    else:
        raise _refuse(
            "The sweep's limits.max_trials is needed for random and bayesian sampling; say how "
            "many trials to run, like limits: {max_trials: 20}."
        )
    if max_trials > MAX_TRIALS:
        raise _refuse(
            f"The sweep's limits.max_trials is {max_trials}, over the {MAX_TRIALS} one sweep "
            "may run; split it into several sweeps."
        )
    if grid is not None and max_trials > grid:
        # A grid is covered once: more trials would repeat points.
        max_trials = grid

    def optional(key: str, least: int) -> int | None:
        if spec.get(key) is None:
            return None
        number = _whole(f"limits.{key}", spec[key], least)
        if number > MAX_TRIALS:
            raise _refuse(f"The sweep's limits.{key} must be at most {MAX_TRIALS}, not {number}.")
        return number

    timeout = spec.get("timeout")
    seconds = None if timeout is None else _real("limits.timeout", timeout)
    if seconds is not None and not 0 < seconds <= MAX_TIMEOUT_S:
        raise _refuse(
            f"The sweep's limits.timeout must be seconds over 0 and at most {MAX_TIMEOUT_S} "
            f"(a year), not {timeout!r}."
        )
    return Limits(
        max_trials=max_trials,
        max_concurrent_trials=optional("max_concurrent_trials", 1),
        max_failed_trials=optional("max_failed_trials", 1),
        timeout=seconds,
    )


def _early(data: Any) -> EarlyTermination | None:
    if data is None:
        return None
    if isinstance(data, str):
        data = {"policy": data}
    spec = _mapping("early_termination", data, "{policy: median, delay_evaluation: 5}")
    policy = spec.get("policy")
    if policy not in set(Policy):
        raise _refuse(
            f"The sweep's early_termination.policy is {policy!r}; use one of {', '.join(Policy)}."
        )
    policy = Policy(policy)
    own = _POLICY_FIELDS[policy]
    common = ("policy", "evaluation_interval", "delay_evaluation")
    others = sorted({f for fs in _POLICY_FIELDS.values() for f in fs} - set(own))
    for key in spec:
        if key in others:
            raise _refuse(
                f"The sweep's early_termination.{key} does not apply to the {policy} policy; "
                f"its keys are {', '.join((*common, *own))}."
            )
    _known("early_termination", spec, (*common, *own))
    values: dict[str, Any] = {
        "evaluation_interval": _whole(
            "early_termination.evaluation_interval", spec.get("evaluation_interval", 1), 1
        ),
        "delay_evaluation": _whole(
            "early_termination.delay_evaluation", spec.get("delay_evaluation", 0), 0
        ),
    }
    if "startup_trials" in spec:
        values["startup_trials"] = _whole(
            "early_termination.startup_trials", spec["startup_trials"], 0
        )
    if "truncation_percentage" in spec:
        percentage = _real("early_termination.truncation_percentage", spec["truncation_percentage"])
        if not 0 < percentage < 100:
            raise _refuse(
                "The sweep's early_termination.truncation_percentage must be between 0 and 100 "
                f"(the share of trials stopped at each evaluation), not {percentage:g}."
            )
        values["truncation_percentage"] = percentage
    if "reduction_factor" in spec:
        values["reduction_factor"] = _whole(
            "early_termination.reduction_factor", spec["reduction_factor"], 2
        )
    return EarlyTermination(policy=policy, **values)
