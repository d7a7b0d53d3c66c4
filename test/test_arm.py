"""Arm kinematics from the shipped URDF against an independent DH model, gradients, bad config."""
from math import pi
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_policy_ros.embodiment.arm import ArmKinematics
from diffusion_policy_ros.errors import ConfigError
from diffusion_policy_ros.geometry import rot6d_to_matrix

URDF = Path(__file__).resolve().parents[1] / "urdf" / "ur5e_like.urdf"
# Universal Robots' published UR5e DH parameters
A = [0, -0.425, -0.3922, 0, 0, 0]
D = [0.1625, 0, 0, 0.1333, 0.0997, 0.0996]
ALPHA = [pi / 2, 0, 0, pi / 2, -pi / 2, 0]


def dh_fk(q):
    t = np.eye(4)
    for qi, a, d, al in zip(q, A, D, ALPHA):
        ct, st, ca, sa = np.cos(qi), np.sin(qi), np.cos(al), np.sin(al)
        t = t @ np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1]])
    return t


def test_forward_kinematics_matches_the_dh_model():
    """UR's DH parameters give the flange in UR's `base` frame; ur_description's base_link (REP-103, what
    TF and our poses use) is `base` turned by pi about z, so the same joint angles put the tool at
    (-x, -y, z) of the DH result."""
    arm = ArmKinematics(URDF)
    assert arm.dof == 6 and arm.joint_names[0] == "shoulder_pan_joint"
    q = np.random.default_rng(0).uniform(-pi, pi, (1000, 6))
    pose = arm.fk(torch.as_tensor(q)).numpy()
    base = np.diag([-1.0, -1.0, 1.0, 1.0])  # base_link ← base: pi about z
    ref = np.stack([base @ dh_fk(qi) for qi in q])
    assert np.allclose(arm.link_pose(q[0], "base"), base, atol=1e-6)  # the URDF parser reads float32
    assert np.abs(pose[:, :3] - ref[:, :3, 3]).max() < 1e-6  # same tool position everywhere (1 µm; the URDF parser reads float32)
    # The URDF's tool frame differs from DH frame 6 by a constant rotation.
    rot = rot6d_to_matrix(torch.as_tensor(pose[:, 3:])).numpy()
    offset = ref[0, :3, :3].T @ rot[0]
    assert np.abs(ref[:, :3, :3] @ offset - rot).max() < 1e-6


def test_gradients_match_finite_differences():
    arm = ArmKinematics(URDF)
    q = torch.tensor([0.3, -1.2, 1.1, -0.4, 0.8, 0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: arm.fk(x), (q,), eps=1e-6, atol=1e-6)


def test_limits_come_from_the_urdf():
    lim = ArmKinematics(URDF).limits
    assert np.allclose(lim.lower[2], -pi, atol=1e-5) and np.allclose(lim.upper[0], 2 * pi, atol=1e-5)
    assert np.allclose(lim.max_velocity, pi, atol=1e-5)


def test_bad_configurations_fail_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        ArmKinematics(tmp_path / "nope.urdf")
    with pytest.raises(ConfigError, match=r"missing \['elbow'\]"):
        ArmKinematics(URDF, joint_names=["shoulder_pan_joint", "shoulder_lift_joint", "elbow", "wrist_1_joint",
                                         "wrist_2_joint", "wrist_3_joint"])
    bad = tmp_path / "bad.urdf"
    bad.write_text(URDF.read_text().replace('velocity="3.141592653589793" effort="28"', 'velocity="0" effort="28"', 1))
    with pytest.raises(ConfigError, match=r"positive velocity limit"):
        ArmKinematics(bad)


def smooth_joint_path(arm, q0, t=12, speed=0.4, seed=0):
    """A joint path within velocity limits, and its end-effector poses."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=6)
    direction /= np.abs(direction).max()
    q = q0 + np.arange(1, t + 1)[:, None] * 0.1 * speed * direction
    return torch.as_tensor(q), arm.fk(torch.as_tensor(q))


Q0 = np.array([0.2, -1.3, 1.4, -1.6, -1.5, 0.3])


def test_tracker_follows_a_feasible_trajectory():
    from diffusion_policy_ros.embodiment.arm import ArmTracker

    arm = ArmKinematics(URDF)
    tracker = ArmTracker(arm, dt=0.1)
    _, target = smooth_joint_path(arm, Q0)
    q = tracker.rollout(target[None], torch.as_tensor(Q0)[None])
    reached = arm.fk(q)[0]
    assert (reached[:, :3] - target[:, :3]).norm(dim=-1).max() < 0.01  # within 1 cm
    steps = torch.diff(torch.cat((torch.as_tensor(Q0)[None], q[0])), dim=0).abs()
    assert (steps <= torch.as_tensor(arm.limits.max_velocity) * 0.1 + 1e-9).all()


def test_infeasible_targets_cost_more_and_joint_limits_hold():
    from diffusion_policy_ros.embodiment.arm import ArmTracker

    arm = ArmKinematics(URDF)
    tracker = ArmTracker(arm, dt=0.1)
    _, target = smooth_joint_path(arm, Q0)
    far = target.clone()
    far[:, :3] += torch.tensor([0.0, 0.0, 1.5])  # 1.5 m above: out of reach
    costs = tracker.cost(torch.stack((target, far)), torch.as_tensor(np.stack((Q0, Q0))))
    assert costs[1] > 100 * costs[0]
    q = tracker.rollout(far[None], torch.as_tensor(Q0)[None])
    assert (q >= torch.as_tensor(arm.limits.lower)).all() and (q <= torch.as_tensor(arm.limits.upper)).all()


def test_tracking_cost_gradient_matches_finite_differences():
    from diffusion_policy_ros.embodiment.arm import ArmTracker

    arm = ArmKinematics(URDF)
    tracker = ArmTracker(arm, dt=0.1)
    _, target = smooth_joint_path(arm, Q0, t=3)
    target = (target + 0.02).detach().requires_grad_(True)  # a little off the path, so the cost is not ~0
    q0 = torch.as_tensor(Q0)[None]
    assert torch.autograd.gradcheck(lambda x: tracker.cost(x[None], q0), (target,), eps=1e-6, atol=1e-5)
