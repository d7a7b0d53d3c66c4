"""Poses and rotations: the 6-D rotation representation (Zhou et al. 2019) in torch, so that
autograd can carry gradients through it, plus numpy conversions for ROS quaternions via scipy.

6-D convention: the first two *rows* of the rotation matrix, as pytorch3d's matrix_to_rotation_6d
(and so Diffusion Policy / UMI datasets) use. Written here rather than pulling in pytorch3d (no
wheels for current torch) for two ten-line functions.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) → (..., 3, 3) by Gram-Schmidt on the two rows."""
    a1, a2 = d6[..., :3], d6[..., 3:6]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) → (..., 6): the first two rows."""
    return m[..., :2, :].reshape(*m.shape[:-2], 6)


def compose_pose9(parent: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
    """parent ∘ child for poses stored as position(3) + rot6d(6)."""
    rp = rot6d_to_matrix(parent[..., 3:9])
    rc = rot6d_to_matrix(child[..., 3:9])
    pos = parent[..., :3] + (rp @ child[..., :3].unsqueeze(-1)).squeeze(-1)
    return torch.cat((pos, matrix_to_rot6d(rp @ rc)), dim=-1)


def relative_pose9(parent: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """parent⁻¹ ∘ pose: `pose` expressed in the frame `parent`."""
    rp = rot6d_to_matrix(parent[..., 3:9])
    r = rot6d_to_matrix(pose[..., 3:9])
    rpt = rp.transpose(-1, -2)
    pos = (rpt @ (pose[..., :3] - parent[..., :3]).unsqueeze(-1)).squeeze(-1)
    return torch.cat((pos, matrix_to_rot6d(rpt @ r)), dim=-1)


def quat_xyzw_to_rot6d(q: np.ndarray) -> np.ndarray:
    """ROS quaternion(s) (x, y, z, w) → 6-D rotation(s)."""
    m = Rotation.from_quat(np.asarray(q, dtype=np.float64).reshape(-1, 4)).as_matrix()
    return m[:, :2, :].reshape(*np.shape(q)[:-1], 6)


def rot6d_to_quat_xyzw(d6: np.ndarray) -> np.ndarray:
    m = rot6d_to_matrix(torch.as_tensor(np.asarray(d6, dtype=np.float64).reshape(-1, 6))).numpy()
    return Rotation.from_matrix(m).as_quat().reshape(*np.shape(d6)[:-1], 4)


def enu_to_ned(position) -> np.ndarray:
    """ROS ENU (x east, y north, z up) position(s) → PX4 NED (x north, y east, z down)."""
    p = np.asarray(position, np.float64)
    return np.stack((p[..., 1], p[..., 0], -p[..., 2]), axis=-1)


def ned_yaw_from_enu_rotation(d6) -> np.ndarray:
    """Heading of the body x axis: 6-D rotation(s) in ENU (FLU body) → PX4 yaw (NED, FRD body), radians."""
    m = rot6d_to_matrix(torch.as_tensor(np.asarray(d6, np.float64))).numpy()
    yaw_enu = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return np.arctan2(np.sin(np.pi / 2 - yaw_enu), np.cos(np.pi / 2 - yaw_enu))
