"""What the simulator's tasks are made of: their objects (free boxes, spring-loaded parts), the
straight-line motion of scripted experts, and the timer that says a success condition has held."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BoxObject:
    """A free box (the task's object) or, with ``free=False``, a fixed visual-only marker."""

    name: str
    half: tuple[float, float, float]
    rgba: tuple[float, float, float, float]
    mass: float = 0.2
    friction: float = 0.6
    free: bool = True
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class SpringPart:
    """A part held up by a spring in a fixed housing: a box on a vertical slide joint (``travel`` metres
    of stroke below its rest height). Its stiffness is set per episode (``ArmSim.set_part``), so it
    cannot be seen, only felt. The housing is visual only."""

    name: str
    half: tuple[float, float, float]
    rgba: tuple[float, float, float, float]
    rest_z: float  # the part's centre height at rest
    travel: float = 0.03
    damping: float = 20.0  # N·s/m
    housing_rgba: tuple[float, float, float, float] = (0.3, 0.3, 0.35, 1.0)
    pos: tuple[float, float] = (0.45, 0.0)


def toward(p: np.ndarray, goal: np.ndarray, step: float) -> np.ndarray:
    """``step`` metres from ``p`` straight to ``goal`` (the goal itself when nearer): scripted experts' motion."""
    d = goal - p
    n = np.linalg.norm(d)
    return goal.copy() if n <= step else p + d * (step / n)


class HoldTimer:
    """How long a task's success condition has held without a break (sim time): the longest stretch.
    With ``spread``, the stretch also restarts (from the current sample) when the ``value`` passed with
    it has varied by more than ``spread`` since the stretch began: held steady, not passed through."""

    def __init__(self, spread: float | None = None):
        self.spread = spread
        self.since: int | None = None
        self.longest_ns = 0
        self.lo = self.hi = 0.0

    def update(self, holds: bool, t_ns: int, value: float = 0.0) -> None:
        if not holds:
            self.since = None
            return
        if self.since is not None and self.spread is not None:
            self.lo, self.hi = min(self.lo, value), max(self.hi, value)
            if self.hi - self.lo > self.spread:
                self.since = None
        if self.since is None:
            self.since, self.lo, self.hi = t_ns, value, value
        self.longest_ns = max(self.longest_ns, t_ns - self.since)
