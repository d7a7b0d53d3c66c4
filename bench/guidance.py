#!/usr/bin/env python3
"""Embodiment-aware guidance: tracking-error reduction, fidelity to the demonstrations, and latency.

Two settings, each with a state-only DP3-style policy trained here on oracle (handheld) demonstrations
of the two-mode box scene (600 steps, about 45 s each on 2 CPU cores):
  aerial  the aerial manipulator (multirotor + 3-DoF arm) following demonstrations made 2x faster
          than its base can follow (1.2 s traversal, 0.25 m detour);
  arm     the UR5e-like arm beside the scene, started near a joint envelope the detours exceed.
For every guidance mode, N samples from the start observation with the same seeds, unguided and
guided; each chunk's executed part (n_action_steps) is *executed in MuJoCo* (sim/guidance_effect.py
executed_tracking_error: the aerial sim's flight controller and arm; the MuJoCo arm following the
runtime's IK output under joint_trajectory_controller semantics) and scored by the measured end-effector
path: physics the guidance never saw. The differentiable model's own score (what the guidance
optimises) is printed beside it, for contrast only. Also: distance to the nearest demonstration
(position RMSE) and per-chunk latency overhead of guidance. DDIM-10 throughout, sampling seed 0.

    python bench/guidance.py                  # table
    python bench/guidance.py --json           # {"executed_tracking_error_reduction": {emb: {mode: f}}, ...}
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import machine

from diffusion_policy_ros.data.synthetic import ObstacleScene, make_obstacle_dataset, state_policy_config
from diffusion_policy_ros.embodiment.base import AerialEmbodiment
from diffusion_policy_ros.sim.guidance_effect import (GuidanceMode, aerial_scene, arm_near_limits, demo_windows,
                                                      guidance_effect)
from diffusion_policy_ros.policy import Policy
from diffusion_policy_ros.train import Trainer

MODES = {  # name → (mode, per-waypoint gradient clip); 10 small clipped gradient steps per denoising step
    "per_step": (GuidanceMode("per_step", strength=8.0, schedule="constant", iterations=10), 0.3),
    "substeps_2": (GuidanceMode("substeps", strength=8.0, schedule="constant", substeps=2, iterations=5), 0.3),
    "posthoc": (GuidanceMode("posthoc", strength=8.0, schedule="constant", refine_from=6, iterations=10), 0.3),
    "per_step_1_iter": (GuidanceMode("per_step", strength=2.0, schedule="constant"), 0.3),  # one step, for contrast
}

def train_policy(scene, out: Path) -> Policy:
    data = make_obstacle_dataset(out / "demos.zarr", n_episodes=60, seed=1, scene=scene, progress=False)
    return Policy.from_checkpoint(Trainer(state_policy_config(), data, out / "run", progress=True).run())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="guidance_bench_"))
    settings = {}
    scene = aerial_scene()
    policy = train_policy(scene, tmp / "aerial")
    obs = {k: np.repeat(v[None], args.samples, 0) for k, v in scene.policy_observation(policy.cfg).items()}
    emb = AerialEmbodiment()
    settings["aerial"] = (policy, obs, emb, emb.state(torch.as_tensor(obs["agent_pos"][:1, -1])),
                          demo_windows(scene, 100, 16, seed=5))
    scene = ObstacleScene(num_points=64, image_size=64)
    policy = train_policy(scene, tmp / "arm")
    obs = {k: np.repeat(v[None], args.samples, 0) for k, v in scene.policy_observation(policy.cfg).items()}
    emb, q_start = arm_near_limits()
    settings["arm_near_limits"] = (policy, obs, emb, emb.state(None, q_start), demo_windows(scene, 100, 16, seed=5))

    results = {}
    for name, (policy, obs, emb, state, demos) in settings.items():
        results[name] = {m: guidance_effect(policy, obs, emb, state, demos, mode, clip=clip, execute=True)
                         for m, (mode, clip) in MODES.items()}
    out = {"executed_tracking_error_reduction": {e: {m: round(r["executed_tracking_error_reduction"], 3)
                                                     for m, r in res.items()} for e, res in results.items()},
           "model_tracking_error_reduction": {e: {m: round(r["tracking_error_reduction"], 3) for m, r in res.items()}
                                              for e, res in results.items()},
           "overhead_ms": {e: {m: round(r["overhead_ms"], 2) for m, r in res.items()} for e, res in results.items()},
           "details": results, "machine": machine(device="cpu", solver="ddim_10", samples=args.samples)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'embodiment':<17}{'mode':<17}{'MuJoCo track err m':>22}{'reduction':>11}{'model says':>12}"
          f"{'demo RMSE m':>22}{'overhead ms':>13}")
    for e, res in results.items():
        for m, r in res.items():
            print(f"{e:<17}{m:<17}{r['executed_tracking_error_unguided_m']:>10.4f} → "
                  f"{r['executed_tracking_error_guided_m']:<9.4f}{r['executed_tracking_error_reduction']:>10.1%}"
                  f"{r['tracking_error_reduction']:>12.1%}{r['demo_rmse_unguided_m']:>11.4f} → "
                  f"{r['demo_rmse_guided_m']:<9.4f}{r['overhead_ms']:>12.1f}")
    print(f"machine: {out['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
