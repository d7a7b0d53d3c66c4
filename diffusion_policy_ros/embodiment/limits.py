"""A robot's position and velocity limits (from its URDF, or a config), checked once when built."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnsafeCommandError


@dataclass
class Limits:
    lower: np.ndarray  # (D,)
    upper: np.ndarray  # (D,)
    max_velocity: np.ndarray  # (D,) units per second, > 0

    def __post_init__(self):
        self.lower, self.upper = np.asarray(self.lower, float), np.asarray(self.upper, float)
        self.max_velocity = np.asarray(self.max_velocity, float)
        if not (self.lower.shape == self.upper.shape == self.max_velocity.shape) or np.any(self.lower >= self.upper) \
                or np.any(self.max_velocity <= 0):
            raise UnsafeCommandError(f"limits: expected lower < upper and max_velocity > 0 of one shape, got "
                                     f"{self.lower.tolist()}, {self.upper.tolist()}, {self.max_velocity.tolist()}")
