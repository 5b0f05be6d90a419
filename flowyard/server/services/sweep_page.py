"""What the studio's sweep page draws: its progress, the best value so far over the finished
trials, and the trials as parallel coordinates, as plain numbers for the page's SVG (no script
needed to read a sweep)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from flowyard.schemas import TrialOut
from flowyard.sweepspec import Distribution, SweepSpec

WIDTH, HEIGHT, PAD = 640, 180, 32


@dataclass(frozen=True)
class Axis:
    name: str
    x: float
    # Tick labels and their heights, top to bottom.
    ticks: list[tuple[str, float]]


@dataclass(frozen=True)
class Line:
    number: int
    points: str
    best: bool
    pruned: bool


@dataclass(frozen=True)
class SweepPage:
    counts: Counter[str]
    max_trials: int
    # The best value after each finished trial, as a polyline's points, and its range.
    best_points: str = ""
    best_range: tuple[str, str] = ("", "")
    axes: list[Axis] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def _scale(values: list[float], log: bool) -> tuple[float, float]:
    ys = [math.log10(v) for v in values] if log else values
    low, high = min(ys), max(ys)
    return (low, high) if high > low else (low - 1, high + 1)


def _y(value: float, low: float, high: float, log: bool = False) -> float:
    v = math.log10(value) if log else value
    return PAD + (HEIGHT - 2 * PAD) * (1 - (v - low) / (high - low))


def build(spec: SweepSpec, trials: list[TrialOut], best_trial_id: str | None) -> SweepPage:
    counts = Counter(t.state for t in trials)
    page = SweepPage(counts=counts, max_trials=spec.limits.max_trials)
    minimize = spec.objective.minimize
    finished = sorted(
        (t for t in trials if t.state == "complete" and t.value is not None and t.ended_at),
        key=lambda t: (t.ended_at, t.number),
    )
    if finished:
        best: list[float] = []
        for t in finished:
            assert t.value is not None
            best.append(t.value if not best else (min if minimize else max)(best[-1], t.value))
        low, high = _scale(best, False)
        step = (WIDTH - 2 * PAD) / max(len(best) - 1, 1)
        points = " ".join(
            f"{PAD + i * step:.1f},{_y(v, low, high):.1f}" for i, v in enumerate(best)
        )
        page = SweepPage(
            counts=counts,
            max_trials=page.max_trials,
            best_points=points,
            best_range=(f"{(high if minimize else low):.4g}", f"{best[-1]:.4g}"),
        )
    drawn = [t for t in trials if t.value is not None and not math.isnan(t.value)]
    if not drawn:
        return page
    names = [*spec.search_space, spec.objective.metric]
    gap = (WIDTH - 2 * PAD) / max(len(names) - 1, 1)
    axes: list[Axis] = []
    heights: dict[int, list[float]] = {t.number: [] for t in drawn}
    for i, name in enumerate(names):
        dimension = spec.search_space.get(name)
        if dimension is not None and dimension.type == Distribution.CHOICE:
            labels = [str(v) for v in dimension.values]
            slot = (HEIGHT - 2 * PAD) / max(len(labels) - 1, 1)
            where = {label: PAD + j * slot for j, label in enumerate(labels)}
            axes.append(Axis(name, PAD + i * gap, list(where.items())))
            for t in drawn:
                heights[t.number].append(where.get(t.parameters[name], PAD))
            continue
        log = dimension is not None and dimension.type == Distribution.LOGUNIFORM
        values = {
            t.number: float(t.parameters[name]) if dimension is not None else float(t.value or 0)
            for t in drawn
        }
        low, high = _scale(list(values.values()), log)

        def show(v: float, log: bool = log) -> str:
            return f"{10**v:.3g}" if log else f"{v:.3g}"

        axes.append(Axis(name, PAD + i * gap, [(show(high), PAD), (show(low), HEIGHT - PAD)]))
        for t in drawn:
            heights[t.number].append(_y(values[t.number], low, high, log))
    lines = [
        Line(
            number=t.number,
            points=" ".join(
                f"{a.x:.1f},{y:.1f}" for a, y in zip(axes, heights[t.number], strict=True)
            ),
            best=t.run_id == best_trial_id,
            pruned=t.state == "pruned",
        )
        for t in drawn
    ]
    # The best drawn last, on top.
    lines.sort(key=lambda line: line.best)
    return SweepPage(
        counts=counts,
        max_trials=page.max_trials,
        best_points=page.best_points,
        best_range=page.best_range,
        axes=axes,
        lines=lines,
    )
