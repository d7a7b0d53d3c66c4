"""Action chunk → timed trajectory, stamped from the time it is published, with a smooth hand-over.

Waypoint i of a chunk predicted from the observation at t_obs is due at t_obs + (i + offset)·dt, as
Diffusion Policy's real-robot runner schedules it. The chunk reaches the robot at publish time +
``action_latency`` (the hand-over time): every waypoint due by then is dropped, and a trajectory
never starts at or before it. joint_trajectory_controller (JTC) ramps from its current state only
to a first point that is still in the future; a first point in the past makes it *jump* to wherever
the new trajectory is at that moment (ros2_controllers, ``Trajectory::sample``). So:

- scheduling happens after inference, from the publish time the driver passes in;
- a chunk observed while the robot was at rest (nothing commanded after its observation: the first
  chunk, or after the last trajectory ended) starts at the hand-over instead (``anchor_ns``): the robot
  is still where it was observed, so none of its steps is late;
- a chunk that is entirely late is not sent (``schedule`` returns None: the running trajectory goes on);
- a new trajectory starts with the running trajectory's command shortly after the hand-over time,
  then blends from the old trajectory into the new chunk over ``blend_steps`` waypoints, so the
  command is continuous across chunks; where the running trajectory also planned, the new chunk weighs
  at most ``ensemble`` (temporal ensembling: each waypoint an exponential average of the chunks that
  predicted it, so the far-ahead predictions a long latency executes do not each move the command);
- waypoints carry velocities consistent with the positions (zero at the end, as JTC requires by
  default), so JTC interpolates cubic splines across waypoints instead of straight lines.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ObservationError


def _hermite(q0, v0, q1, v1, h, s):
    """Cubic through (q0, v0) at 0 and (q1, v1) at h, at s ∈ [0, h]: JTC's cubic segment. → (q, v)."""
    c2 = (-3.0 * q0 + 3.0 * q1 - 2.0 * v0 * h - v1 * h) / h ** 2
    c3 = (2.0 * q0 - 2.0 * q1 + v0 * h + v1 * h) / h ** 3
    return q0 + v0 * s + c2 * s ** 2 + c3 * s ** 3, v0 + 2.0 * c2 * s + 3.0 * c3 * s ** 2


@dataclass
class TimedTrajectory:
    times_ns: np.ndarray  # (K,) int64, absolute, strictly increasing
    values: np.ndarray  # (K, D)
    velocities: np.ndarray | None = None  # (K, D) units/s; None: positions only (linear segments)

    def sample(self, t_ns) -> tuple[np.ndarray, np.ndarray]:
        """(positions, velocities) at time(s) t as JTC samples them: linear segments without
        velocities, cubic with; the first point before the span, the last point (at rest) after it."""
        t = np.atleast_1d(np.asarray(t_ns, np.int64))
        T, Q = self.times_ns, np.asarray(self.values, float)
        if len(T) == 1:
            q, v = np.repeat(Q, len(t), 0), np.zeros((len(t), Q.shape[1]))
        else:
            i = np.clip(np.searchsorted(T, t, side="right") - 1, 0, len(T) - 2)
            h = ((T[i + 1] - T[i]) / 1e9)[:, None]
            s = np.clip((t - T[i]) / 1e9, 0.0, None)[:, None]
            s = np.minimum(s, h)
            if self.velocities is None:
                slope = (Q[i + 1] - Q[i]) / h
                q, v = Q[i] + slope * s, slope.copy()
            else:
                V = np.asarray(self.velocities, float)
                q, v = _hermite(Q[i], V[i], Q[i + 1], V[i + 1], h, s)
            v[t < T[0]] = 0.0
            v[t >= T[-1]] = 0.0
        return (q, v) if np.ndim(t_ns) else (q[0], v[0])

    def at(self, t_ns) -> np.ndarray:
        """Positions at time(s) t (see ``sample``)."""
        return self.sample(t_ns)[0]

    @property
    def end_ns(self) -> int:
        return int(self.times_ns[-1])

    def with_velocities(self, first: np.ndarray | None = None) -> "TimedTrajectory":
        """The same positions with velocities from them: central differences inside, ``first`` (or a
        forward difference) at the first point, zero at the last."""
        T, Q = self.times_ns.astype(float) / 1e9, np.asarray(self.values, float)
        V = np.zeros_like(Q)
        if len(T) > 2:
            V[1:-1] = (Q[2:] - Q[:-2]) / (T[2:] - T[:-2])[:, None]
        if len(T) > 1:
            V[0] = (Q[1] - Q[0]) / (T[1] - T[0]) if first is None else first
        return TimedTrajectory(self.times_ns, Q, V)


def command_at(traj: TimedTrajectory | None, t_ns: int, period_ns: int, dim: int) -> np.ndarray:
    """Command outputs (a move or a velocity per period, not a position): the value that holds from
    ``t_ns`` on. A waypoint holds over the period that ends at its time, so this is the trajectory one
    period ahead (linear between waypoints, the last one until the end); zeros from the end on, and
    with nothing to follow: the robot stands still."""
    if traj is None or t_ns >= traj.end_ns:
        return np.zeros(dim)
    return np.asarray(traj.at(min(int(t_ns) + int(period_ns), traj.end_ns)), float)


class ActionScheduler:
    def __init__(self, period_ns: int, action_latency_ns: int = 0, offset_steps: float = 0.0, blend_steps: int = 2,
                 ensemble: float = 1.0):
        if period_ns <= 0 or action_latency_ns < 0 or blend_steps < 0 or not 0 < ensemble <= 1:
            raise ObservationError(f"action scheduler: expected period_ns > 0, action_latency_ns >= 0, "
                                   f"blend_steps >= 0, 0 < ensemble <= 1; got {period_ns}, {action_latency_ns}, "
                                   f"{blend_steps}, {ensemble}")
        self.period, self.latency, self.offset, self.blend = int(period_ns), int(action_latency_ns), offset_steps, blend_steps
        self.ensemble = float(ensemble)
        self.lead = self.period // 10  # the first point lies this far beyond the hand-over time
        self.current: TimedTrajectory | None = None

    def reset(self) -> None:
        self.current = None

    def handover_ns(self, publish_ns: int) -> int:
        """When a trajectory published at ``publish_ns`` takes over: publish + action latency."""
        return int(publish_ns) + self.latency

    def anchor_ns(self, t_obs_ns: int, publish_ns: int) -> int:
        """When a chunk observed at ``t_obs_ns`` starts: at its observation, or, when nothing was
        commanded to move after that observation (the robot has been at rest since: the first chunk,
        or after the last trajectory ended), at the hand-over time. A robot at rest is where it was
        observed, so the chunk's first steps are still right; dropping them as late would send it
        straight to a waypoint planned for a robot that had been moving all along (a jump of up to
        the latency's worth of motion)."""
        at_rest = self.current is None or self.current.end_ns <= int(t_obs_ns)
        return max(int(t_obs_ns), self.handover_ns(publish_ns)) if at_rest else int(t_obs_ns)

    def schedule(self, chunk: np.ndarray, t_obs_ns: int, publish_ns: int) -> TimedTrajectory | None:
        """The chunk as a trajectory published at ``publish_ns`` (read after inference), or None when
        every waypoint is already due (the running trajectory continues). Does not change ``current``."""
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim != 2 or len(chunk) == 0:
            raise ObservationError(f"action chunk: expected shape (steps, dim), got {chunk.shape}")
        steps = np.round((np.arange(len(chunk)) + self.offset) * self.period).astype(np.int64)
        times = self.anchor_ns(t_obs_ns, publish_ns) + steps
        first = self.handover_ns(publish_ns) + self.lead
        keep = times > first
        if not keep.any():
            return None
        times, values = times[keep], chunk[keep]
        if self.current is not None and self.current.end_ns > first:
            old = self.current.at(times)
            w = np.minimum((np.arange(len(times)) + 1) / (self.blend + 1), 1.0)
            # Temporal ensembling: where the running trajectory also has a prediction, the new chunk
            # weighs at most `ensemble` (an exponential average over the chunks that planned each time).
            w = np.where(times <= self.current.end_ns, np.minimum(w, self.ensemble), w)[:, None]
            values = (1 - w) * old + w * values
            # Start from where the running trajectory commands at `first`: no jump at the hand-over.
            if times[0] > first:
                times = np.concatenate(([first], times))
                values = np.concatenate((self.current.at(first)[None], values))
        return TimedTrajectory(times, values)
