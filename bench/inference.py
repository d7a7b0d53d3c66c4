#!/usr/bin/env python3
"""Per-chunk inference latency (encode + denoise) for each shipped config and solver.

For every (config, solver) it times, on the same weights and observation:
  ours      Policy.predict: validated numpy in → world-frame numpy chunk out (inference_mode,
            observation encoded once, the shared sampling loop);
  baseline  the loop as real-stanford/diffusion_policy's DiffusionUnetHybridImagePolicy.predict_action
            and conditional_sample run it: torch.no_grad, obs dict reshaped per key, a fresh
            condition mask written into the trajectory before every model call, scheduler.step.
Batch size 1 (one robot), untrained weights (latency does not depend on their values).

    python bench/inference.py                 # table
    python bench/inference.py --json          # {"results": {config: {solver: {...}}}, "machine": ...}
    python bench/inference.py --quick         # small variants, few runs (smoke check)
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from common import machine, time_ms

from diffusion_policy_ros import constants as C
from diffusion_policy_ros.config import load_config, shipped_configs
from diffusion_policy_ros.policy import DiffusionPolicy, Policy

SOLVERS = [("ddpm", 100), ("ddim", 10), ("dpmsolver++", 10), ("dpmsolver++", 5)]


def fake_observation(cfg, rng) -> dict[str, np.ndarray]:
    obs = {}
    for key, spec in cfg.observations.items():
        shape = (cfg.n_obs_steps, *spec.shape)
        obs[key] = (rng.integers(0, 255, shape, dtype=np.uint8) if spec.type == C.OBS_RGB
                    else rng.normal(size=shape).astype(np.float32))
    return obs


@torch.no_grad()
def baseline_predict(model: DiffusionPolicy, obs: dict[str, torch.Tensor], scheduler, steps: int,
                     generator: torch.Generator) -> torch.Tensor:
    """Diffusion Policy's predict_action → conditional_sample, step for step."""
    cfg = model.cfg
    nobs = {k: model.normalizer.normalize(k, v.float()) for k, v in obs.items()}
    b, to = next(iter(nobs.values())).shape[:2]
    this_nobs = {k: v[:, :to].reshape(-1, *v.shape[2:]) for k, v in nobs.items()}
    nobs_features = model.obs_encoder({k: v.reshape(b, to, *v.shape[1:]) for k, v in this_nobs.items()})
    global_cond = nobs_features.reshape(b, -1)
    cond_data = torch.zeros((b, cfg.horizon, cfg.action.dim), dtype=global_cond.dtype)
    cond_mask = torch.zeros_like(cond_data, dtype=torch.bool)
    trajectory = torch.randn(cond_data.shape, dtype=cond_data.dtype, generator=generator)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        trajectory[cond_mask] = cond_data[cond_mask]
        model_output = model.denoiser(trajectory, t, global_cond)
        trajectory = scheduler.step(model_output, t, trajectory, generator=generator).prev_sample
    trajectory[cond_mask] = cond_data[cond_mask]
    action_pred = model.normalizer.unnormalize(C.ACTION, trajectory)
    start = to - 1
    return action_pred[:, start:start + cfg.n_action_steps].cpu().numpy()


def bench_config(name: str, variant: str | None, runs: int, solvers) -> dict:
    cfg = load_config(name, variant=variant)
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    obs_np = fake_observation(cfg.policy, np.random.default_rng(0))
    obs_t = {k: torch.from_numpy(v)[None] for k, v in obs_np.items()}
    params = sum(p.numel() for p in model.parameters())
    out = {}
    for solver, steps in solvers:
        policy.cfg.inference.solver, policy.cfg.inference.num_inference_steps = solver, steps
        ours = time_ms(lambda: policy.predict(obs_np, seed=0), runs)
        sched = model.inference_scheduler(solver)
        gen = torch.Generator().manual_seed(0)
        base = time_ms(lambda: baseline_predict(model, obs_t, sched, steps, gen), runs)
        out[f"{solver}_{steps}"] = {
            "solver": solver, "steps": steps, "runs": runs,
            "median_ms": round(float(np.median(ours)), 3), "p99_ms": round(float(np.percentile(ours, 99)), 3),
            "baseline_median_ms": round(float(np.median(base)), 3),
            "baseline_p99_ms": round(float(np.percentile(base, 99)), 3),
            "speedup_vs_baseline": round(float(np.median(base) / np.median(ours)), 3),
        }
    ddpm = out.get("ddpm_100")
    if ddpm:  # Diffusion Policy's default sampler, for perspective
        for r in out.values():
            r["speedup_vs_baseline_ddpm_100"] = round(ddpm["baseline_median_ms"] / r["median_ms"], 2)
    return {"config": name + (f":{variant}" if variant else ""), "parameters_m": round(params / 1e6, 2),
            "solvers": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=None, help="default: every shipped config")
    ap.add_argument("--variant", default=None, help="e.g. small")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="small variants, 5 runs, two solvers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    variant, runs, solvers = args.variant, args.runs, SOLVERS
    if args.quick:
        variant, runs, solvers = "small", 5, [("ddim", 10), ("dpmsolver++", 5)]
    results = {}
    for name in args.configs or shipped_configs():
        r = bench_config(name, variant, runs, solvers)
        results[name] = r
        if not args.json:
            print(f"\n{r['config']}  ({r['parameters_m']} M parameters, batch 1, {runs} runs)")
            print(f"  {'solver':<16}{'median ms':>11}{'p99 ms':>10}{'baseline ms':>13}{'ratio':>8}"
                  f"{'vs DP DDPM-100':>16}")
            for key, s in r["solvers"].items():
                vs_dp = s.get("speedup_vs_baseline_ddpm_100")
                vs_dp = f"{vs_dp:.1f}x" if vs_dp is not None else "-"
                print(f"  {key:<16}{s['median_ms']:>11.2f}{s['p99_ms']:>10.2f}{s['baseline_median_ms']:>13.2f}"
                      f"{s['speedup_vs_baseline']:>7.2f}x{vs_dp:>16}")
    if args.json:
        print(json.dumps({"machine": machine(device="cpu"), "results": {k: v["solvers"] for k, v in results.items()},
                          "parameters_m": {k: v["parameters_m"] for k, v in results.items()}}, indent=2))
    else:
        print(f"\nmachine: {machine(device='cpu')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
