import numpy as np
import torch
from scipy.spatial.transform import Rotation

from diffusion_policy_ros.action import ActionRepresentation
from diffusion_policy_ros.config import ActionConfig
from diffusion_policy_ros.geometry import (compose_pose9, matrix_to_rot6d, quat_xyzw_to_rot6d, relative_pose9,
                                           rot6d_to_matrix, rot6d_to_quat_xyzw)


def random_pose9(n, seed):
    rng = np.random.default_rng(seed)
    m = Rotation.random(n, random_state=seed).as_matrix()
    return torch.as_tensor(np.concatenate((rng.normal(size=(n, 3)), m[:, :2, :].reshape(n, 6)), 1))


def test_rot6d_round_trip_matches_scipy():
    m = torch.as_tensor(Rotation.random(2000, random_state=0).as_matrix())
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(m)), m, atol=1e-12)
    # Gram-Schmidt turns any non-degenerate 6-D vector into a rotation.
    r = rot6d_to_matrix(torch.randn(500, 6, dtype=torch.float64))
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(500, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(500, dtype=torch.float64))


def test_quaternion_conversion_matches_scipy():
    q = Rotation.random(300, random_state=1).as_quat()  # x, y, z, w like ROS
    back = rot6d_to_quat_xyzw(quat_xyzw_to_rot6d(q))
    assert np.allclose(np.abs(np.sum(back * q, axis=1)), 1.0, atol=1e-10)  # same rotation up to sign


def test_relative_and_compose_are_inverse_and_match_matrices():
    parent, pose = random_pose9(400, 2), random_pose9(400, 3)
    rel = relative_pose9(parent, pose)
    assert torch.allclose(compose_pose9(parent, rel), pose, atol=1e-10)

    def h(p):
        t = torch.eye(4, dtype=torch.float64).repeat(len(p), 1, 1)
        t[:, :3, :3], t[:, :3, 3] = rot6d_to_matrix(p[:, 3:]), p[:, :3]
        return t

    expected = torch.linalg.inv(h(parent)) @ h(pose)
    assert torch.allclose(h(rel), expected, atol=1e-10)


def test_rel_ee_representation_round_trip_and_gradients():
    rep = ActionRepresentation(ActionConfig(representation="rel_ee", dim=10, pose_key="agent_pos"))
    pose = random_pose9(8, 4)
    actions = torch.cat((random_pose9(8 * 16, 5).reshape(8, 16, 9), torch.rand(8, 16, 1, dtype=torch.float64)), -1)
    rel = rep.to_policy(actions, pose)
    assert torch.allclose(rel[..., 9], actions[..., 9])  # gripper passes through
    # The first step equal to the current pose is the identity in the relative frame.
    same = rep.to_policy(torch.cat((pose[:, None], actions[:, :1, 9:]), -1), pose)
    assert torch.allclose(same[..., :9], torch.tensor([0, 0, 0, 1, 0, 0, 0, 1, 0], dtype=torch.float64), atol=1e-10)
    x = rel.clone().requires_grad_(True)
    back = rep.to_absolute(x, pose)
    assert torch.allclose(back, actions, atol=1e-10)
    back[..., :3].sum().backward()  # autograd reaches the policy-space sample
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad[..., :3].abs().sum() > 0


def test_absolute_representations_are_identity():
    for rep in ("abs_ee", "joint"):
        r = ActionRepresentation(ActionConfig(representation=rep, dim=10 if rep == "abs_ee" else 7))
        a = torch.randn(2, 16, r.cfg.dim)
        assert r.to_policy(a) is a and r.to_absolute(a) is a


def test_enu_to_ned_for_px4_setpoints():
    from scipy.spatial.transform import Rotation

    from diffusion_policy_ros.geometry import enu_to_ned, ned_yaw_from_enu_rotation, quat_xyzw_to_rot6d

    np.testing.assert_allclose(enu_to_ned([1.0, 2.0, 3.0]), [2.0, 1.0, -3.0])  # east, north, up → N, E, D
    # Facing north in ENU (yaw +90°) is yaw 0 in NED; facing east (yaw 0) is +90° in NED.
    for yaw_enu, yaw_ned in [(np.pi / 2, 0.0), (0.0, np.pi / 2), (np.pi, -np.pi / 2)]:
        d6 = quat_xyzw_to_rot6d(Rotation.from_euler("z", yaw_enu).as_quat())
        assert np.isclose(ned_yaw_from_enu_rotation(d6), yaw_ned, atol=1e-9)
