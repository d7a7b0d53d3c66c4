"""Wrist force/torque stream → clean, fixed-rate wrench windows for the policy.

Per sample (in arrival order, integer-ns stamps):
  1. tool gravity compensation: subtract the tool's weight seen in the sensor frame,
     f_g = m · Rᵀ g and τ_g = c × f_g, from the sensor's orientation R (sensor → base);
  2. bias: subtract the offset measured by the last ``tare()``;
  3. low-pass: Butterworth (scipy ``butter`` + ``sosfilt`` with carried state, so streaming);
  4. saturation: a sample whose raw force/torque exceeds the configured limit on any axis is flagged.
``window(t_end_ns, n, period_ns)`` resamples the filtered history at the policy's observation times
by linear interpolation on the stamps (no sample from after t_end is used).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi
from scipy.spatial.transform import Rotation

from ..config import ForceConfig
from ..errors import ObservationError


def _rotation(orientation) -> np.ndarray:
    o = np.asarray(orientation, np.float64)
    if o.shape == (3, 3):
        return o
    if o.shape == (4,):
        return Rotation.from_quat(o).as_matrix()  # x, y, z, w
    raise ObservationError(f"orientation: expected a 3x3 matrix or quaternion (x, y, z, w), got shape {o.shape}")


class WrenchProcessor:
    def __init__(self, cfg: ForceConfig):
        self.cfg = cfg
        self.com = np.asarray(cfg.tool_com, np.float64)
        self.gravity = np.asarray(cfg.gravity, np.float64)
        self.bias = np.zeros(6)
        self.sos = (butter(cfg.filter_order, cfg.cutoff_hz, fs=cfg.sample_rate_hz, output="sos")
                    if cfg.cutoff_hz > 0 else None)
        self._zi = None
        size = max(8, int(cfg.history_s * cfg.sample_rate_hz * 1.5))
        self._t = np.zeros(size, np.int64)
        self._raw = np.zeros((size, 6))  # gravity-compensated, before bias and filter (for tare)
        self._out = np.zeros((size, 6))
        self._n = 0  # samples written in total
        self.saturated = False
        self.saturation_count = 0

    def gravity_wrench(self, orientation) -> np.ndarray:
        """The tool's weight as the sensor sees it: (6,) [f, τ] in the sensor frame."""
        if self.cfg.tool_mass == 0:
            return np.zeros(6)
        f = self.cfg.tool_mass * _rotation(orientation).T @ self.gravity
        return np.concatenate((f, np.cross(self.com, f)))

    def add(self, stamp_ns: int, wrench, orientation=None) -> np.ndarray:
        """Process one sample; returns the filtered, compensated wrench (6,)."""
        w = np.asarray(wrench, np.float64).reshape(-1)
        if w.shape != (6,) or not np.isfinite(w).all():
            raise ObservationError(f"wrench: expected 6 finite values, got {w.tolist()}")
        if self._n and stamp_ns <= self._t[(self._n - 1) % len(self._t)]:
            raise ObservationError(f"wrench stamp: expected > {int(self._t[(self._n - 1) % len(self._t)])} ns "
                                   f"(time must increase), got {stamp_ns}")
        if self.cfg.tool_mass > 0 and orientation is None:
            raise ObservationError("orientation: expected the sensor orientation for gravity compensation "
                                   "(tool_mass > 0), got None")
        self.saturated = bool(np.any(np.abs(w[:3]) > self.cfg.force_limit)
                              or np.any(np.abs(w[3:]) > self.cfg.torque_limit))
        self.saturation_count += self.saturated
        comp = w - self.gravity_wrench(orientation) if self.cfg.tool_mass > 0 else w
        x = comp - self.bias
        if self.sos is not None:
            if self._zi is None:  # start the filter at rest on the first sample, no step transient
                self._zi = sosfilt_zi(self.sos)[:, :, None] * x[None, None, :]
            y, self._zi = sosfilt(self.sos, x[None, :], axis=0, zi=self._zi)
            x = y[0]
        i = self._n % len(self._t)
        self._t[i], self._raw[i], self._out[i] = stamp_ns, comp, x
        self._n += 1
        return x.copy()

    @property
    def samples(self) -> int:
        """Samples processed since the last restart."""
        return self._n

    def restart(self) -> None:
        """Forget the history and filter state (time restarted: a new sim episode, a looped bag); keep the bias."""
        self._n, self._zi = 0, None

    def tare(self) -> np.ndarray:
        """Zero the sensor: the bias becomes the mean of the last ``tare_samples`` compensated samples."""
        k = min(self.cfg.tare_samples, self._n, len(self._t))
        if k == 0:
            raise ObservationError("tare: expected wrench samples to average, got none yet")
        idx = (np.arange(self._n - k, self._n)) % len(self._t)
        new_bias = self._raw[idx].mean(axis=0)
        # Shift the filter state and history by the change so the output steps to the tared value.
        delta = new_bias - self.bias
        if self._zi is not None:
            self._zi = self._zi - sosfilt_zi(self.sos)[:, :, None] * delta[None, None, :]
        self._out[: min(self._n, len(self._t))] -= delta
        self.bias = new_bias
        return self.bias.copy()

    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """(stamps (K,), filtered wrenches (K, 6)) in time order."""
        k = min(self._n, len(self._t))
        idx = np.arange(self._n - k, self._n) % len(self._t)
        return self._t[idx], self._out[idx]

    def window(self, t_end_ns: int, n: int, period_ns: int) -> np.ndarray:
        """(n, 6) filtered wrench at t_end − (n−1−i)·period, linearly interpolated; uses no sample after t_end."""
        t, w = self.history()
        times = t_end_ns - period_ns * np.arange(n - 1, -1, -1, dtype=np.int64)
        if len(t) == 0 or times[0] < t[0] or t_end_ns > t[-1] + period_ns:
            have = "none" if len(t) == 0 else f"{int(t[0])}..{int(t[-1])} ns"
            raise ObservationError(f"wrench window: expected samples covering {int(times[0])}..{int(t_end_ns)} ns, "
                                   f"have {have}")
        past = t <= t_end_ns
        t, w = t[past], w[past]
        return np.stack([np.interp(times, t, w[:, j]) for j in range(6)], axis=1)
