"""Limits enforced on every trajectory before it leaves the runtime.

NaN or inf anywhere → ``UnsafeCommandError`` (nothing is sent). Positions are clamped into
[lower, upper]; each step is then shortened so that no segment, including the first one from the
current position at ``now``, exceeds the velocity limit (timing is kept, motion is reduced: the
conservative choice). End-effector targets can be clamped into a workspace box the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..embodiment.limits import Limits  # noqa: F401  (enforced here)
from ..errors import UnsafeCommandError  # noqa: F401
from .schedule import TimedTrajectory


@dataclass
class SafetyReport:
    position_clamped: int = 0  # waypoint entries moved into [lower, upper]
    velocity_limited: int = 0  # waypoint entries shortened to respect max_velocity


def enforce_limits(traj: TimedTrajectory, current: np.ndarray, now_ns: int, limits: Limits
                   ) -> tuple[TimedTrajectory, SafetyReport]:
    values = np.asarray(traj.values, float)
    current = np.asarray(current, float)
    if not np.isfinite(values).all() or not np.isfinite(current).all():
        raise UnsafeCommandError("trajectory: expected finite values, got NaN/inf; nothing is sent")
    if values.shape[1:] != limits.lower.shape or current.shape != limits.lower.shape:
        raise UnsafeCommandError(f"trajectory: expected {limits.lower.shape[0]} values per waypoint, got "
                                 f"{values.shape[1:]} (current {current.shape})")
    report = SafetyReport()
    clamped = np.clip(values, limits.lower, limits.upper)
    report.position_clamped = int(np.count_nonzero(clamped != values))
    out = np.empty_like(clamped)
    prev, t_prev = np.clip(current, limits.lower, limits.upper), int(now_ns)
    for k, (t, q) in enumerate(zip(traj.times_ns, clamped)):
        dt = max(int(t) - t_prev, 0) / 1e9
        step = limits.max_velocity * dt
        limited = np.clip(q, prev - step, prev + step)
        report.velocity_limited += int(np.count_nonzero(limited != q))
        out[k] = limited
        prev, t_prev = limited, int(t)
    return TimedTrajectory(np.asarray(traj.times_ns, np.int64), out), report


def clamp_to_box(points: np.ndarray, lo, hi) -> tuple[np.ndarray, int]:
    """Clamp (..., 3) positions into a workspace box; returns (clamped, number of entries moved)."""
    p = np.asarray(points, float)
    if not np.isfinite(p).all():
        raise UnsafeCommandError("workspace: expected finite positions, got NaN/inf; nothing is sent")
    c = np.clip(p, lo, hi)
    return c, int(np.count_nonzero(c != p))
