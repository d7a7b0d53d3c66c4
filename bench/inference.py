#!/usr/bin/env python3
"""Per-chunk inference latency (encode + denoise) and action quality of the fast samplers.

Headline (the default DP3 config): latency of Diffusion Policy's loop at its default DDPM-100 (the
baseline), DDIM-10, DPM-Solver++ at 5 and 4 steps, warm start, and this package's default
(the config's own sampler, traced denoiser), on the same untrained weights (latency does not depend
on their values); action error of each against 100-step DDPM, measured on the shipped trained
checkpoint `push_dp3` (dp3:small, same sampler settings) over windows of simulator demonstrations
(bench/solver_quality.py). Default DP3 cannot be trained to convergence on a 2-core CPU in a bench run.

Then, for every (config, solver), on the same weights and observation:
  ours      Policy.predict: validated numpy in → world-frame numpy chunk out (inference_mode,
            observation encoded once, the shared sampling loop);
  baseline  the loop as real-stanford/diffusion_policy's DiffusionUnetHybridImagePolicy.predict_action
            and conditional_sample run it: torch.no_grad, obs dict reshaped per key, a fresh
            condition mask written into the trajectory before every model call, scheduler.step.
Batch size 1 (one robot), untrained weights (latency does not depend on their values).

    python bench/inference.py                 # table
    python bench/inference.py --json          # {"results": {config: {solver: {...}}}, "machine": ...}
    python bench/inference.py --quick         # small variants, few runs (smoke check)
    python bench/inference.py --headline-only # the default-DP3 table and its JSON keys only
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from common import machine, time_ms

from diffusion_policy_ros import constants as C
from diffusion_policy_ros.config import load_config, shipped_configs
from diffusion_policy_ros.policy import DiffusionPolicy, Policy

SOLVERS = [("ddpm", 100), ("ddim", 10), ("dpmsolver++", 10), ("dpmsolver++", 5)]
# Headline rows: name → (solver, steps, warm start index), all on the default hot path (traced).
HEADLINE = {"ddim_10": ("ddim", 10, 0), "dpmsolver++_5": ("dpmsolver++", 5, 0),
            "dpmsolver++_4": ("dpmsolver++", 4, 0), "ddim_10_warm5": ("ddim", 10, 5),
            "ddim_10_warm7": ("ddim", 10, 7)}


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


def headline(runs: int, windows: int, references: int, episodes: int, out_dir: Path,
             variant: str | None = None) -> dict:
    """The default DP3 config: latency per sampler (and the baseline loop); action error on push_dp3."""
    from solver_quality import CANDIDATES
    from solver_quality import run as quality

    from diffusion_policy_ros.config import resolve_shipped_checkpoint

    cfg = load_config("dp3", variant=variant)
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    inf = cfg.policy.inference
    default = inf.solver, inf.num_inference_steps, inf.trace
    obs_np = fake_observation(cfg.policy, np.random.default_rng(0))
    obs_t = {k: torch.from_numpy(v)[None] for k, v in obs_np.items()}
    prev = policy.predict(obs_np, seed=1, full_horizon=True)

    def timed(solver, steps, k, trace):
        inf.solver, inf.num_inference_steps, inf.trace = solver, steps, trace
        kw = dict(warm_start=prev, shift=cfg.policy.n_action_steps, start_index=k) if k else {}
        t = time_ms(lambda: policy.predict(obs_np, seed=0, **kw), runs)
        return {"median_ms": round(float(np.median(t)), 2), "p99_ms": round(float(np.percentile(t, 99)), 2)}

    gen = torch.Generator().manual_seed(0)
    t = time_ms(lambda: baseline_predict(model, obs_t, model.inference_scheduler("ddpm"), 100, gen),
                max(5, runs // 5))
    rows = {"baseline_ddpm_100": {"median_ms": round(float(np.median(t)), 2),
                                  "p99_ms": round(float(np.percentile(t, 99)), 2), "denoiser_calls": 100}}
    for name, (solver, steps, k) in HEADLINE.items():
        rows[name] = {**timed(solver, steps, k, True), "denoiser_calls": steps - k}
    rows["default"] = {**timed(*default[:2], 0, default[2]), "denoiser_calls": default[1]}

    # Action error: push_dp3 on windows of fresh simulator demonstrations (seeds never trained on).
    ckpt = resolve_shipped_checkpoint("push_dp3")
    dataset = out_dir / f"push_{episodes}.zarr"
    if not (dataset / "meta" / "episode_ends").exists():
        from diffusion_policy_ros.sim.experts import collect

        collect("push", episodes, dataset, seed=5000, overwrite=True)
    names = {"ddim_10": CANDIDATES["ddim_10"], "default": CANDIDATES["default"],
             **{n: (sv, st, k, True) for n, (sv, st, k) in HEADLINE.items() if n != "ddim_10"}}
    q = quality(ckpt, dataset, windows, references, max(5, runs // 5), seed=0, candidates=names)
    ref = q["solvers"]["ddim_10"]["action_error_m"]
    # The baseline samples DDPM-100 itself: its error is DDPM-100 against another DDPM-100 draw.
    q["solvers"]["baseline_ddpm_100"] = {"action_error_m": q["ddpm100_self_error_m"],
                                         "error_vs_ddim10": round(q["ddpm100_self_error_m"] / max(ref, 1e-12), 3),
                                         "median_ms": q["ddpm100_median_ms"]}
    for name, r in rows.items():
        e = q["solvers"][name]
        r.update(action_error_m=e["action_error_m"], error_vs_ddim10=e["error_vs_ddim10"],
                 push_dp3_median_ms=e["median_ms"],
                 speedup_vs_baseline=round(rows["baseline_ddpm_100"]["median_ms"] / r["median_ms"], 2))
    return {"config": "dp3" + (f":{variant}" if variant else ""), "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "default": {"solver": default[0], "steps": default[1], "trace": default[2]},
            "quality_checkpoint": str(ckpt), "quality_windows": q["windows"], "references": q["references"],
            "ddpm100_self_error_m": q["ddpm100_self_error_m"], "push_dp3_ddpm100_median_ms": q["ddpm100_median_ms"],
            "rows": rows}


def print_headline(h: dict) -> None:
    d = h["default"]
    print(f"{h['config']} ({h['parameters_m']} M parameters, batch 1); default sampler: {d['solver']}-"
          f"{d['steps']}, traced={d['trace']}. Action error: position RMSE to the nearest of {h['references']} "
          f"DDPM-100 samples on push_dp3, {h['quality_windows']} windows (DDPM-100 vs itself "
          f"{h['ddpm100_self_error_m'] * 1000:.2f} mm)")
    print(f"  {'sampler':<20}{'calls':>6}{'median ms':>11}{'p99 ms':>9}{'vs baseline':>13}{'error mm':>10}"
          f"{'vs DDIM-10':>12}")
    for name, r in h["rows"].items():
        print(f"  {name:<20}{r['denoiser_calls']:>6}{r['median_ms']:>11.1f}{r['p99_ms']:>9.1f}"
              f"{r['speedup_vs_baseline']:>12.2f}x{r['action_error_m'] * 1000:>10.2f}{r['error_vs_ddim10']:>11.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=None, help="default: every shipped config")
    ap.add_argument("--variant", default=None, help="e.g. small")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="small variants, 5 runs, two solvers")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--headline-only", action="store_true", help="only the default-DP3 table")
    ap.add_argument("--no-headline", action="store_true", help="only the per-config table")
    ap.add_argument("--windows", type=int, default=24, help="dataset windows for the action error")
    ap.add_argument("--references", type=int, default=16, help="DDPM-100 samples per window")
    ap.add_argument("--episodes", type=int, default=6, help="simulator demonstrations the windows come from")
    ap.add_argument("--out", type=Path, default=Path("bench_out/inference"))
    args = ap.parse_args(argv)
    head = None
    if not args.no_headline:
        args.out.mkdir(parents=True, exist_ok=True)
        head = headline(5 if args.quick else args.runs, args.windows, args.references, args.episodes, args.out,
                        variant="small" if args.quick else None)
        if not args.json:
            print_headline(head)
    top = {} if head is None else {
        "default_speedup_vs_baseline": head["rows"]["default"]["speedup_vs_baseline"],
        "default_action_error_vs_ddim10": head["rows"]["default"]["error_vs_ddim10"], "headline": head}
    if args.headline_only:
        if args.json:
            print(json.dumps({**top, "machine": machine(device="cpu")}, indent=2))
        return 0
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
        print(json.dumps({**top, "machine": machine(device="cpu"),
                          "results": {k: v["solvers"] for k, v in results.items()},
                          "parameters_m": {k: v["parameters_m"] for k, v in results.items()}}, indent=2))
    else:
        print(f"\nmachine: {machine(device='cpu')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
