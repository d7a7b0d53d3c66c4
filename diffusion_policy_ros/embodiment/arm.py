"""Serial-arm kinematics from a URDF, differentiable (pytorch-kinematics), and its limits.

``fk(q)`` returns the end-effector pose as position + 6-D rotation (the action representation's
layout), so costs on world-frame trajectories can be pulled back to joint space by autograd.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_kinematics as pk
import torch

from ..errors import ConfigError
from ..geometry import matrix_to_rot6d
from ..runtime.safety import Limits


class ArmKinematics:
    def __init__(self, urdf: str | Path, ee_link: str = "tool0", joint_names: list[str] | None = None,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        path = Path(urdf)
        if not path.is_file():
            raise ConfigError(f"embodiment.urdf: expected a URDF file, got '{path}' (not found)")
        text = path.read_text()
        try:
            self.chain = pk.build_serial_chain_from_urdf(text, ee_link).to(dtype=dtype, device=device)
        except (KeyError, ValueError) as e:
            raise ConfigError(f"embodiment.ee_link: expected a link of {path.name}, got '{ee_link}' ({e})") from None
        names = self.chain.get_joint_parameter_names()
        if joint_names is not None:
            missing = [n for n in joint_names if n not in names]
            if missing or len(joint_names) != len(names):
                raise ConfigError(f"embodiment.joint_names: expected the {len(names)} movable joints of {path.name} "
                                  f"up to {ee_link} {names}, got {list(joint_names)} (missing {missing})")
            if list(joint_names) != names:
                raise ConfigError(f"embodiment.joint_names: expected chain order {names}, got {list(joint_names)}")
        self.joint_names = names
        self.dtype, self.device = dtype, torch.device(device)
        lower, upper = (np.asarray(x, float) for x in self.chain.get_joint_limits())
        vel = np.asarray(self.chain.get_joint_velocity_limits()[1], float)
        bad = [n for n, lo, hi, v in zip(names, lower, upper, vel) if not (lo < hi and v > 0)]
        if bad:
            raise ConfigError(f"{path.name}: joints {bad} need lower < upper and a positive velocity limit, got "
                              f"lower {lower.tolist()}, upper {upper.tolist()}, velocity {vel.tolist()}")
        self.limits = Limits(lower, upper, vel)

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    def fk(self, q: torch.Tensor) -> torch.Tensor:
        """Joint positions (..., dof) → end-effector pose (..., 9): position + 6-D rotation, base frame."""
        q = torch.as_tensor(q, dtype=self.dtype, device=self.device)
        shape = q.shape[:-1]
        m = self.chain.forward_kinematics(q.reshape(-1, self.dof)).get_matrix()
        pose = torch.cat((m[:, :3, 3], matrix_to_rot6d(m[:, :3, :3])), dim=-1)
        return pose.reshape(*shape, 9)
