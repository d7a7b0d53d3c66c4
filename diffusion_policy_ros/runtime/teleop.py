"""Joystick → end-effector velocity command, as a teleoperator drives the arm or the aerial
manipulator while demonstrations are recorded. Pure Python; ``ros/teleop_node.py`` is the ROS shell.

Deadman: nothing moves unless the deadman button is held (a zero command is sent once on release).
Speed scaling: two buttons multiply the speed by 1.25 / 0.8 within [min_scale, max_scale]. Gripper:
a button toggles open (0) / closed (1) on its press. Axes inside the dead zone read 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError


@dataclass
class TeleopConfig:
    # SpaceMouse via spacenav_node's joy: axes 0-5 = x, y, z, roll, pitch, yaw; buttons 0, 1.
    linear_axes: tuple[int, int, int] = (0, 1, 2)  # joy axes driving x, y, z
    angular_axes: tuple[int, int, int] = (3, 4, 5)  # joy axes driving roll, pitch, yaw
    axis_signs: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # -1 flips an axis (6 values)
    linear_speed: float = 0.10  # m/s at full deflection and scale 1
    angular_speed: float = 0.5  # rad/s
    deadzone: float = 0.05  # axis deflection below this counts as zero
    deadman_button: int = -1  # -1: none (a SpaceMouse has two buttons; gamepads use a shoulder button)
    gripper_button: int = 0  # -1: no gripper
    speed_up_button: int = -1  # doubles the speed scale (-1: none)
    speed_down_button: int = -1  # halves it
    min_scale: float = 0.1  # speed scale bounds
    max_scale: float = 2.0  # speed scale bounds

    def __post_init__(self):
        if len(self.axis_signs) != 6:
            raise ConfigError(f"teleop axis_signs: expected 6 values, got {len(self.axis_signs)}")
        if self.linear_speed <= 0 or self.angular_speed <= 0 or not 0 <= self.deadzone < 1:
            raise ConfigError(f"teleop: expected linear_speed, angular_speed > 0 and deadzone in [0, 1), got "
                              f"{self.linear_speed}, {self.angular_speed}, {self.deadzone}")


@dataclass
class TeleopCommand:
    twist: np.ndarray  # (6,) linear m/s, angular rad/s, in the command frame
    gripper: float | None = None  # set when the gripper toggled: 0 open, 1 closed
    active: bool = False  # deadman held and the twist is worth sending (or the release's zero)


@dataclass
class TeleopMapper:
    cfg: TeleopConfig = field(default_factory=TeleopConfig)
    scale: float = 1.0
    gripper: float = 0.0
    _buttons: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    _was_active: bool = False

    def _pressed(self, buttons: np.ndarray, index: int) -> bool:
        """A rising edge of button ``index``."""
        if index < 0 or index >= len(buttons):
            return False
        before = self._buttons[index] if index < len(self._buttons) else 0
        return bool(buttons[index]) and not before

    def update(self, axes, buttons) -> TeleopCommand:
        axes, buttons = np.asarray(axes, np.float64), np.asarray(buttons, np.int32)
        c = self.cfg
        need = max(*c.linear_axes, *c.angular_axes) + 1
        if len(axes) < need or not np.isfinite(axes).all():
            raise ConfigError(f"joy.axes: expected >= {need} finite values (teleop axis mapping), got {axes.tolist()}")
        if self._pressed(buttons, c.speed_up_button):
            self.scale = min(c.max_scale, self.scale * 1.25)
        if self._pressed(buttons, c.speed_down_button):
            self.scale = max(c.min_scale, self.scale * 0.8)
        toggled = None
        if self._pressed(buttons, c.gripper_button):
            self.gripper = toggled = 1.0 - self.gripper
        self._buttons = buttons
        held = c.deadman_button < 0 or (c.deadman_button < len(buttons) and bool(buttons[c.deadman_button]))
        v = axes[list(c.linear_axes) + list(c.angular_axes)] * np.asarray(c.axis_signs)
        v = np.where(np.abs(v) < c.deadzone, 0.0, np.clip(v, -1.0, 1.0))
        twist = np.concatenate((v[:3] * c.linear_speed, v[3:] * c.angular_speed)) * self.scale if held else np.zeros(6)
        active = held or self._was_active  # one zero command after release
        self._was_active = held
        return TeleopCommand(twist, toggled, active)
