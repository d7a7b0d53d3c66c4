"""Cost guidance: gradients of every cost term, and guided sampling lowering the cost for every solver."""
import numpy as np
import pytest
import torch

from diffusion_policy_ros.diffusion.guidance import (CostGuidance, GuidanceConfig, clearance_cost, clip_per_waypoint,
                                                     goal_cost, workspace_cost)
from diffusion_policy_ros.errors import ConfigError
from diffusion_policy_ros.policy import DiffusionPolicy, Policy

from .factories import start_obs, state_only_config

TRAJ = torch.randn(2, 6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.3


@pytest.mark.parametrize("cost", [
    goal_cost(torch.tensor([0.1, 0.2, 0.3])),
    workspace_cost([-0.2, -0.2, -0.2], [0.2, 0.2, 0.2]),
    clearance_cost(torch.randn(30, 3, generator=torch.Generator().manual_seed(1)) * 0.3, margin=0.3),
])
def test_cost_gradients_match_finite_differences(cost):
    x = TRAJ.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(cost, (x,), eps=1e-6, atol=1e-6)
    assert cost(TRAJ).shape == (2,) and (cost(TRAJ) >= 0).all()


def test_per_waypoint_clipping_limits_each_group_separately():
    g = torch.zeros(1, 2, 10)
    g[0, 0, :3] = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    g[0, 0, 3:9] = 0.01
    out = clip_per_waypoint(g, [(slice(0, 3), 1.0), (slice(3, 9), 1.0)])
    assert torch.allclose(out[0, 0, :3].norm(), torch.tensor(1.0))
    assert torch.allclose(out[0, 0, :3] / out[0, 0, :3].norm(), torch.tensor([0.6, 0.8, 0.0]))  # direction kept
    assert torch.equal(out[0, 0, 3:9], g[0, 0, 3:9])  # small groups untouched


@pytest.mark.parametrize("solver", ["ddpm", "ddim", "dpmsolver++"])
def test_guided_samples_have_lower_cost_on_the_same_seeds(solver):
    cfg = state_only_config()
    cfg.policy.inference.solver = solver
    cfg.policy.inference.num_inference_steps = 100 if solver == "ddpm" else 10
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    obs = start_obs(cfg, batch=16)
    goal = torch.tensor([0.3, 0.3, 0.3])
    plain = policy.predict(obs, seed=0, full_horizon=True)
    tensors, _ = policy.validate(obs)
    guide = CostGuidance(model, tensors, [(1.0, goal_cost(goal))], GuidanceConfig())  # clipped, bounded steps
    guided = policy.predict(obs, seed=0, full_horizon=True, guidance=guide)
    c = goal_cost(goal)
    before, after = c(torch.as_tensor(plain)), c(torch.as_tensor(guided))
    assert (after < before).all()  # every sample moved toward the goal, same initial noise
    assert after.mean() < 0.9 * before.mean()
    assert np.isfinite(guided).all() and guide.last_cost is not None


def test_bad_guidance_config():
    with pytest.raises(ConfigError, match="schedule"):
        GuidanceConfig(schedule="cosine")
    with pytest.raises(ConfigError, match="clip"):
        GuidanceConfig(clip_position=0)


def test_arm_tracking_cost_guides_samples_toward_what_the_arm_can_follow():
    from pathlib import Path

    from diffusion_policy_ros.embodiment.arm import ArmKinematics, ArmTracker

    arm = ArmKinematics(Path(__file__).resolve().parents[1] / "urdf" / "ur5e_like.urdf")
    tracker = ArmTracker(arm, dt=0.1)
    q0 = torch.tensor([[0.2, -1.3, 1.4, -1.6, -1.5, 0.3]], dtype=torch.float64).expand(8, -1)
    cost = lambda traj: tracker.cost(traj[..., :9], q0)  # noqa: E731  world-frame EE poses → tracking error
    cfg = state_only_config()
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    obs = start_obs(cfg, batch=8)
    plain = torch.as_tensor(policy.predict(obs, seed=0, full_horizon=True))
    tensors, _ = policy.validate(obs)
    guide = CostGuidance(model, tensors, [(1.0, cost)], GuidanceConfig())
    guided = torch.as_tensor(policy.predict(obs, seed=0, full_horizon=True, guidance=guide))
    assert cost(guided).mean() < 0.9 * cost(plain).mean()


def test_more_guided_substeps_lower_the_cost_further():
    cfg = state_only_config()
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    obs = start_obs(cfg, batch=16)
    tensors, _ = policy.validate(obs)
    goal = torch.tensor([0.3, 0.3, 0.3])
    c = goal_cost(goal)
    costs = []
    for k in (1, 3):
        guide = CostGuidance(model, tensors, [(1.0, c)], GuidanceConfig())
        cond = model.encode(tensors)
        with torch.no_grad():
            x = model.conditional_sample(cond, generator=torch.Generator().manual_seed(0), guidance=guide, substeps=k)
        costs.append(float(c(model.to_world(x, tensors)).mean()))
    assert costs[1] < costs[0]


def test_reference_cost_sees_the_steps_estimate_and_last_steps_limits_guidance():
    from diffusion_policy_ros.diffusion.guidance import ReferenceCost

    cfg = state_only_config()
    cfg.policy.inference.solver, cfg.policy.inference.num_inference_steps = "ddim", 6
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    obs = start_obs(cfg, batch=4)
    tensors, _ = policy.validate(obs)
    seen = []

    def cost(traj, ref):  # a pull toward the step's own estimate, shifted: the reference must not move
        seen.append(ref.clone())
        return ((traj[..., :3] - ref[..., :3] - 0.05) ** 2).sum(-1).mean(-1)

    guide = CostGuidance(model, tensors, [(1.0, ReferenceCost(cost))], GuidanceConfig(iterations=3, last_steps=2))
    policy.predict(obs, seed=0, full_horizon=True, guidance=guide)
    assert len(seen) == 2 * 3  # the last 2 of 6 steps, 3 iterations each
    assert all(torch.equal(seen[0], r) for r in seen[1:3]) and not torch.equal(seen[0], seen[3])
    assert not any(r.requires_grad for r in seen)
    with pytest.raises(ConfigError, match="last_steps"):
        GuidanceConfig(last_steps=-1)


def test_clearance_ignores_points_at_the_goal():
    traj = torch.zeros(1, 4, 3, dtype=torch.float64)
    traj[0, :, 0] = torch.tensor([0.0, 0.1, 0.2, 0.3])
    target = torch.tensor([[0.32, 0.0, 0.0]], dtype=torch.float64)  # the point the trajectory ends at
    wall = torch.tensor([[0.15, 0.02, 0.0]], dtype=torch.float64)  # one it passes on the way
    assert clearance_cost(target, 0.05)(traj).item() > 0
    assert clearance_cost(target, 0.05, goal_radius=0.05)(traj).item() == 0.0
    both = torch.cat((target, wall))
    assert clearance_cost(both, 0.05, goal_radius=0.05)(traj).item() == pytest.approx(
        clearance_cost(wall, 0.05)(traj).item())
    away = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)  # an explicit goal elsewhere: the target counts
    assert clearance_cost(target, 0.05, goal_radius=0.05)(traj, away).item() > 0
