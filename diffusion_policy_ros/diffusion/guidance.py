"""Cost guidance for the sampling loop: steer denoising with gradients of world-frame costs.

A cost is any differentiable function of world-frame action trajectories (B, H, Da) → (B,): an
embodiment's tracking cost, a workspace barrier, a goal term, obstacle clearance. ``CostGuidance``
evaluates it on the model's clean-sample estimate x̂₀ mapped to the world (un-normalisation and the
action representation, by autograd: no hand-derived mappings), clips the gradient per waypoint
(position and rotation separately), scales it by the schedule and subtracts it from the sample.
Post-hoc refinement re-noises a finished sample to a small t and denoises it with guidance on.

A ``ReferenceCost`` also sees the denoiser's own x̂₀ of that step (world frame, held fixed while the
step's gradient iterations run): an embodiment cost against it changes the *command* so the robot's
flight follows what the policy meant, instead of pulling the plan toward what the robot would do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import constants as C
from .sampling import GuidanceContext

Cost = Callable[[torch.Tensor], torch.Tensor]  # world-frame (B, H, Da) → (B,)


@dataclass
class ReferenceCost:
    """A cost of the trajectory and a fixed reference (the step's x̂₀, world frame): fn(traj, ref) → (B,)."""

    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class GuidanceConfig:
    strength: float = 1.0
    schedule: str = "alpha_bar"  # alpha_bar: strength·ᾱ_t (strongest near the end) | constant
    clip_position: float = 0.1  # per-waypoint gradient norm limit on position dims (normalised units)
    clip_rotation: float = 0.1  # ... on 6-D rotation dims
    clip_other: float = 0.1  # ... on anything else (gripper, joints)
    iterations: int = 1  # clipped gradient steps per denoising step (re-evaluating the cost each time)
    last_steps: int = 0  # guide only the last N denoising steps (0: all)

    def __post_init__(self):
        from ..errors import ConfigError

        if self.iterations < 1 or self.last_steps < 0:
            raise ConfigError(f"guidance.iterations/last_steps: expected >= 1 and >= 0, got {self.iterations}, "
                              f"{self.last_steps}")
        if self.strength < 0 or self.schedule not in ("alpha_bar", "constant"):
            raise ConfigError(f"guidance: expected strength >= 0 and schedule alpha_bar|constant, got "
                              f"{self.strength}, {self.schedule!r}")
        if min(self.clip_position, self.clip_rotation, self.clip_other) <= 0:
            raise ConfigError("guidance.clip_*: expected positive gradient-norm limits, got "
                              f"{self.clip_position}, {self.clip_rotation}, {self.clip_other}")


def clip_per_waypoint(grad: torch.Tensor, groups: list[tuple[slice, float]]) -> torch.Tensor:
    """Scale each waypoint's gradient, per group of dimensions, to at most that group's norm."""
    out = grad.clone()
    for sl, limit in groups:
        g = grad[..., sl]
        norm = g.norm(dim=-1, keepdim=True)
        out[..., sl] = g * torch.clamp(limit / (norm + 1e-12), max=1.0)
    return out


class CostGuidance:
    """A guidance hook (diffusion.sampling.GuidanceFn) for one observation batch."""

    def __init__(self, model, obs: dict[str, torch.Tensor], costs: list[tuple[float, Cost]], cfg: GuidanceConfig):
        self.model, self.obs, self.costs, self.cfg = model, obs, costs, cfg
        ee = model.cfg.action.representation in (C.ACTION_ABS_EE, C.ACTION_REL_EE)
        d = model.cfg.action.dim
        self.groups = ([(slice(0, 3), cfg.clip_position), (slice(3, 9), cfg.clip_rotation)]
                       + ([(slice(9, d), cfg.clip_other)] if d > 9 else [])) if ee else [(slice(0, d), cfg.clip_other)]
        self.last_cost: torch.Tensor | None = None

    def total_cost(self, world: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return sum(w * (c.fn(world, world.detach() if reference is None else reference)
                        if isinstance(c, ReferenceCost) else c(world)) for w, c in self.costs)

    # The cost is differentiated with respect to x̂₀ only, never through the denoiser: the sampling loop can
    # stay in inference mode (and the denoiser on an exported backend); autograd runs inside this hook.
    needs_grad = False

    def __call__(self, ctx: GuidanceContext) -> torch.Tensor | None:
        if self.cfg.last_steps and ctx.step_index < ctx.num_steps - self.cfg.last_steps:
            return None
        scale = self.cfg.strength * (ctx.alpha_bar if self.cfg.schedule == "alpha_bar" else 1.0)
        step = scale / self.cfg.iterations
        with torch.inference_mode(False):
            x0 = ctx.pred_original.detach().clone()  # an ordinary tensor even when the loop is in inference mode
            reference = None
            if any(isinstance(c, ReferenceCost) for _, c in self.costs):
                with torch.no_grad():
                    reference = self.model.to_world(x0, self.obs)
            total = torch.zeros_like(x0)
            for _ in range(self.cfg.iterations):  # small steps re-evaluated: the rollout costs are not convex
                with torch.enable_grad():
                    x = (x0 + total).requires_grad_(True)
                    cost = self.total_cost(self.model.to_world(x, self.obs), reference)
                    (grad,) = torch.autograd.grad(cost.sum(), x)
                self.last_cost = cost.detach()
                total = total - step * clip_per_waypoint(grad, self.groups)
        return total


# --- composable cost terms (world frame; positions are the first three action dims) ----------------
def goal_cost(goal: torch.Tensor, steps: slice = slice(-1, None)) -> Cost:
    """Squared distance of the chosen waypoints' positions to a goal (inference-time steering)."""
    return lambda traj: ((traj[:, steps, :3] - goal.to(traj)) ** 2).sum(-1).mean(-1)


def workspace_cost(lo, hi) -> Cost:
    """Squared violation of a position box, summed over waypoints (zero inside)."""
    lo_t, hi_t = torch.as_tensor(lo), torch.as_tensor(hi)
    return lambda traj: ((torch.relu(lo_t.to(traj) - traj[..., :3]) ** 2 + torch.relu(traj[..., :3] - hi_t.to(traj)) ** 2)
                         .sum(-1).sum(-1))


def clearance_cost(points: torch.Tensor, margin: float, goal_radius: float = 0.0) -> Cost:
    """Squared intrusion of waypoints into a margin around a point cloud (N, 3) (e.g. the current scene).
    ``goal_radius`` > 0: points that close to the goal (B, 3), by default the trajectory's last waypoint,
    do not count (what the policy means to touch: a target, the surface it rests on)."""

    def cost(traj, goal=None):
        p = points.to(traj)
        d = torch.cdist(traj[..., :3], p[None].expand(traj.shape[0], -1, -1))  # (B, H, N)
        intrusion = torch.relu(margin - d) ** 2
        if goal_radius > 0:
            end = (traj[:, -1, :3] if goal is None else goal).detach().to(traj)
            keep = (end[:, None, :] - p[None]).norm(dim=-1)[:, None, :] > goal_radius  # (B, 1, N)
            intrusion = intrusion * keep.to(traj.dtype)
        return intrusion.sum(-1).sum(-1)

    return cost
