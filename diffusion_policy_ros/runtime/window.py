"""Observation window: per-stream history on integer-ns stamps → n_obs_steps synchronised samples.

Pure Python, no clock of its own: every driver (node, bag replay, simulator) passes stamps and
``now_ns``, so replay is exact and tests are deterministic.

- Each stream has a latency: the time between what the sensor saw and the stamp on its message is
  subtracted, so a camera with 30 ms latency lines up with joint states of the same instant.
- ``sample(now_ns)`` takes the reference time t_ref = the oldest of the streams' newest
  (latency-corrected) stamps, i.e. the latest instant every stream has reached, and returns, for
  k = 0..n-1, each stream's latest sample at or before t_ref − (n−1−k)·period (never a later one).
- A stream whose newest sample is older than its ``max_age`` (relative to now) makes the window
  stale: ``StaleObservationError``; the node then holds instead of commanding.
- Too little history (just started) repeats the oldest sample, as Diffusion Policy pads episode starts.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import ObservationError


class StaleObservationError(ObservationError):
    """A stream has no recent enough sample; no new command may be derived from it."""


@dataclass(frozen=True)
class StreamSpec:
    latency_ns: int = 0  # subtracted from message stamps
    max_age_ns: int = 200_000_000  # newest sample older than this (vs now) → stale


class StreamBuffer:
    """One stream's samples; keeps those within ``keep_ns`` of the newest (sized in time, not count,
    so a 500 Hz stream and a 30 Hz stream both cover the window)."""

    def __init__(self, name: str, spec: StreamSpec, keep_ns: int):
        self.name, self.spec, self.keep_ns = name, spec, int(keep_ns)
        self.stamps: deque[int] = deque()
        self.values: deque = deque()
        self.rejected = 0

    def add(self, stamp_ns: int, value) -> None:
        t = int(stamp_ns) - self.spec.latency_ns
        if self.stamps and t <= self.stamps[-1]:
            self.rejected += 1
            raise ObservationError(f"stream '{self.name}': stamp expected after {self.stamps[-1] + self.spec.latency_ns} "
                                   f"ns (increasing), got {int(stamp_ns)} ns; sample dropped")
        self.stamps.append(t)
        self.values.append(value)
        # Keep one sample older than the horizon so the oldest sample time still has a match.
        while len(self.stamps) > 2 and self.stamps[1] < t - self.keep_ns:
            self.stamps.popleft()
            self.values.popleft()

    @property
    def newest(self) -> int | None:
        return self.stamps[-1] if self.stamps else None

    def at_or_before(self, times: np.ndarray) -> tuple[list, np.ndarray]:
        """For each time, the latest sample at or before it (the oldest one if none is: start padding);
        → (values, their latency-corrected stamps)."""
        stamps = np.fromiter(self.stamps, np.int64, len(self.stamps))
        idx = np.maximum(np.searchsorted(stamps, times, side="right") - 1, 0)
        return [self.values[i] for i in idx], stamps[idx]


class ObservationWindow:
    def __init__(self, streams: dict[str, StreamSpec], n_obs_steps: int, period_ns: int):
        if n_obs_steps < 1 or period_ns <= 0:
            raise ObservationError(f"observation window: expected n_obs_steps >= 1 and period_ns > 0, "
                                   f"got {n_obs_steps}, {period_ns}")
        self.n, self.period = n_obs_steps, int(period_ns)
        # The window reaches back (n-1) periods from t_ref, which may lag a stream's newest by max_age.
        keep = (n_obs_steps - 1) * self.period + max(s.max_age_ns for s in streams.values()) + self.period
        self.buffers = {name: StreamBuffer(name, spec, keep) for name, spec in streams.items()}
        self.last_stamps: dict[str, np.ndarray] = {}

    def add(self, name: str, stamp_ns: int, value) -> None:
        if name not in self.buffers:
            raise ObservationError(f"observation window: unknown stream '{name}', expected one of {sorted(self.buffers)}")
        self.buffers[name].add(stamp_ns, value)

    def clear(self) -> None:
        for b in self.buffers.values():
            b.stamps.clear()
            b.values.clear()
        self.last_stamps = {}

    def ages_ns(self, now_ns: int) -> dict[str, int | None]:
        """Age of each stream's newest sample at now (latency-corrected); None when it has none."""
        return {n: (None if b.newest is None else int(now_ns) - b.newest) for n, b in self.buffers.items()}

    def sample(self, now_ns: int) -> tuple[dict[str, np.ndarray], int]:
        """→ ({stream: stacked (n_obs_steps, ...) array}, t_ref_ns). Raises StaleObservationError.
        The chosen samples' (latency-corrected) stamps are left in ``last_stamps``."""
        for name, age in self.ages_ns(now_ns).items():
            spec = self.buffers[name].spec
            if age is None:
                raise StaleObservationError(f"stream '{name}': no sample received yet")
            if age > spec.max_age_ns:
                raise StaleObservationError(f"stream '{name}': newest sample is {age / 1e6:.1f} ms old, expected "
                                            f"<= {spec.max_age_ns / 1e6:.1f} ms")
        t_ref = min(b.newest for b in self.buffers.values())
        times = t_ref - self.period * np.arange(self.n - 1, -1, -1, dtype=np.int64)
        out, self.last_stamps = {}, {}
        for name, buf in self.buffers.items():
            values, self.last_stamps[name] = buf.at_or_before(times)
            out[name] = np.stack([np.asarray(v) for v in values])
        return out, int(t_ref)
