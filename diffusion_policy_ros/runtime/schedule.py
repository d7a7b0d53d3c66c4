"""Action chunk → timed trajectory, with latency compensation and a smooth hand-over between chunks.

Waypoint i of a chunk predicted from the observation at t_obs is due at t_obs + (i + offset)·dt, as
Diffusion Policy's real-robot runner schedules it. Waypoints due before now + action_latency (the
time a command needs to reach the robot) are dropped; if all are, the last one is sent one period
after that. A new trajectory starts with the previous trajectory's command at its start time, then
blends from the old trajectory into the new chunk over ``blend_steps`` waypoints, so the command is
continuous across chunks (joint_trajectory_controller splices a new trajectory in from its first point).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ObservationError


@dataclass
class TimedTrajectory:
    times_ns: np.ndarray  # (K,) int64, absolute, strictly increasing
    values: np.ndarray  # (K, D)

    def at(self, t_ns) -> np.ndarray:
        """Linear interpolation at time(s) t, holding the end values outside the span."""
        t = np.atleast_1d(np.asarray(t_ns, np.int64))
        out = np.stack([np.interp(t, self.times_ns, self.values[:, j]) for j in range(self.values.shape[1])], -1)
        return out if np.ndim(t_ns) else out[0]

    @property
    def end_ns(self) -> int:
        return int(self.times_ns[-1])


class ActionScheduler:
    def __init__(self, period_ns: int, action_latency_ns: int = 0, offset_steps: float = 0.0, blend_steps: int = 2):
        if period_ns <= 0 or action_latency_ns < 0 or blend_steps < 0:
            raise ObservationError(f"action scheduler: expected period_ns > 0, action_latency_ns >= 0, "
                                   f"blend_steps >= 0; got {period_ns}, {action_latency_ns}, {blend_steps}")
        self.period, self.latency, self.offset, self.blend = int(period_ns), int(action_latency_ns), offset_steps, blend_steps
        self.current: TimedTrajectory | None = None

    def reset(self) -> None:
        self.current = None

    def schedule(self, chunk: np.ndarray, t_obs_ns: int, now_ns: int) -> TimedTrajectory:
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim != 2 or len(chunk) == 0:
            raise ObservationError(f"action chunk: expected shape (steps, dim), got {chunk.shape}")
        times = int(t_obs_ns) + np.round((np.arange(len(chunk)) + self.offset) * self.period).astype(np.int64)
        start = int(now_ns) + self.latency
        keep = times > start
        if keep.any():
            times, values = times[keep], chunk[keep]
        else:  # the whole chunk is late: go to its last action, one period from now
            times, values = np.array([start + self.period], np.int64), chunk[-1:]
        if self.current is not None and self.current.end_ns > start:
            old = self.current.at(times)
            w = np.minimum((np.arange(len(times)) + 1) / (self.blend + 1), 1.0)[:, None]
            values = (1 - w) * old + w * values
            # Start from where the previous trajectory commands at `start`: no jump at the hand-over.
            times = np.concatenate(([start], times))
            values = np.concatenate((self.current.at(start)[None], values))
        self.current = TimedTrajectory(times, values)
        return self.current
