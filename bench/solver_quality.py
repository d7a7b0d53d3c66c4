#!/usr/bin/env python3
"""Few-step solvers and warm start: action error against 100-step DDPM on the same checkpoint, and
latency, in one run.

Observations are dataset windows. For each, R reference chunks are sampled with DDPM-100; every
candidate chunk's error is its position RMSE (metres, executed steps) to the *nearest* reference,
since a multimodal policy may rightly pick another mode. Warm start resumes from the previous
cycle's prediction (the window n_action_steps earlier in the same episode, sampled cold with
DDIM-10), advanced by the executed steps, at inference step k of 10. ``ddim_10`` is the plain
(eager) loop, the reference; ``default`` is the checkpoint's own inference settings with the
default hot path (traced denoiser).

    python bench/solver_quality.py --checkpoint C --dataset D [--windows 24] [--json]
    python bench/solver_quality.py --train-demo      # trains dp3:small on generated data first
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common import machine, time_ms

from diffusion_policy_ros.data import PolicyDataset
from diffusion_policy_ros.policy import Policy

# name → (solver, steps, warm start index or 0, traced denoiser); None: the checkpoint's setting
CANDIDATES = {"ddim_10": ("ddim", 10, 0, False), "ddim_5": ("ddim", 5, 0, False),
              "dpmsolver++_10": ("dpmsolver++", 10, 0, False), "dpmsolver++_5": ("dpmsolver++", 5, 0, False),
              "dpmsolver++_4": ("dpmsolver++", 4, 0, False), "ddim_10_warm5": ("ddim", 10, 5, False),
              "ddim_10_warm7": ("ddim", 10, 7, False), "default": (None, None, 0, None)}


def window_pairs(ds: PolicyDataset, shift: int, count: int, seed: int) -> list[tuple[int, int]]:
    """(previous, current) window indices in the same episode, `shift` steps apart."""
    s = ds.sampler
    key = {(int(e), int(o)): i for i, (e, o) in enumerate(zip(s.ep_start, s.offset))}
    pairs = [(key[(int(e), int(o) - shift)], i) for i, (e, o) in enumerate(zip(s.ep_start, s.offset))
             if (int(e), int(o) - shift) in key]
    rng = np.random.default_rng(seed)
    return [pairs[i] for i in rng.choice(len(pairs), min(count, len(pairs)), replace=False)]


def obs_of(ds: PolicyDataset, i: int, repeat: int) -> dict[str, np.ndarray]:
    b = ds.get_batch([i])["obs"]
    return {k: np.repeat(v.numpy(), repeat, axis=0) for k, v in b.items()}


def nearest_rmse(cands: np.ndarray, refs: np.ndarray, sl: slice) -> float:
    d = cands[:, None, sl, :3] - refs[None, :, sl, :3]  # (C, R, T, 3)
    return float(np.sqrt((d ** 2).sum(-1).mean(-1)).min(axis=1).mean())


def run(checkpoint: Path, dataset: Path, windows: int, refs: int, runs: int, seed: int,
        candidates: dict = CANDIDATES) -> dict:
    policy = Policy.from_checkpoint(checkpoint)
    cfg = policy.cfg
    own = cfg.inference.solver, cfg.inference.num_inference_steps, cfg.inference.trace
    candidates = {name: (c[0] or own[0], c[1] or own[1], c[2], own[2] if c[3] is None else c[3])
                  for name, c in candidates.items()}
    ds = PolicyDataset.from_path(dataset, cfg)
    shift = cfg.n_action_steps
    sl = slice(cfg.n_obs_steps - 1, cfg.n_obs_steps - 1 + cfg.n_action_steps)
    pairs = window_pairs(ds, shift, windows, seed)

    def predict(i, solver, steps, start_index, prev=None, s=seed, batch=refs, trace=False):
        inf = policy.cfg.inference
        inf.solver, inf.num_inference_steps, inf.trace = solver, steps, trace
        kw = dict(warm_start=prev, shift=shift, start_index=start_index) if start_index else {}
        return policy.predict(obs_of(ds, i, batch), seed=s, full_horizon=True, **kw)

    errors = {name: [] for name in candidates}
    for prev_i, cur_i in pairs:
        ref = predict(cur_i, "ddpm", 100, None)
        prev = predict(prev_i, "ddim", 10, None, s=seed + 7)
        for name, (solver, steps, k, trace) in candidates.items():
            cand = predict(cur_i, solver, steps, k, prev=prev if k else None, s=seed + 1, trace=trace)
            errors[name].append(nearest_rmse(cand, ref, sl))
    # DDPM-100 against itself (another seed): the floor any solver can reach.
    floor = [nearest_rmse(predict(c, "ddpm", 100, None, s=seed + 1), predict(c, "ddpm", 100, None), sl)
             for _, c in pairs[: max(1, len(pairs) // 3)]]

    prev1 = predict(pairs[0][0], "ddim", 10, None, batch=1)
    out = {}
    for name, (solver, steps, k, trace) in candidates.items():
        lat = time_ms(lambda: predict(pairs[0][1], solver, steps, k, prev=prev1 if k else None, batch=1,
                                      trace=trace), runs)
        out[name] = {"action_error_m": round(float(np.mean(errors[name])), 8),
                     "median_ms": round(float(np.median(lat)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
                     "denoiser_calls": steps - k, "solver": solver, "steps": steps, "warm_start_index": k,
                     "trace": trace}
    ddpm_lat = time_ms(lambda: predict(pairs[0][1], "ddpm", 100, None, batch=1), max(5, runs // 5))
    base = out["ddim_10"]["action_error_m"]
    for r in out.values():
        r["error_vs_ddim10"] = round(r["action_error_m"] / max(base, 1e-12), 3)
    return {"checkpoint": str(checkpoint), "windows": len(pairs), "references": refs,
            "ddpm100_self_error_m": round(float(np.mean(floor)), 8),
            "ddpm100_median_ms": round(float(np.median(ddpm_lat)), 2), "solvers": out, "machine": machine(device="cpu")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--train-demo", action="store_true", help="train dp3:small on generated data into bench_out/")
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--references", type=int, default=16)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.train_demo:
        from diffusion_policy_ros.config import load_config
        from diffusion_policy_ros.data.synthetic import make_obstacle_dataset
        from diffusion_policy_ros.train import Trainer

        root = Path("bench_out/solver_quality")
        args.dataset = make_obstacle_dataset(root / "dataset.zarr", n_episodes=100, seed=0)
        args.checkpoint = Trainer(load_config("dp3", variant="small"), args.dataset, root / "train").run()
    if args.checkpoint is None or args.dataset is None:
        ap.error("--checkpoint and --dataset, or --train-demo")
    r = run(args.checkpoint, args.dataset, args.windows, args.references, args.runs, args.seed)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['checkpoint']}: {r['windows']} windows, error to the nearest of {r['references']} DDPM-100 samples "
          f"(DDPM-100 vs itself: {r['ddpm100_self_error_m'] * 1000:.2f} mm; DDPM-100 {r['ddpm100_median_ms']:.1f} ms)")
    print(f"  {'sampler':<22}{'calls':>6}{'error mm':>10}{'vs DDIM-10':>12}{'median ms':>11}{'p99 ms':>9}")
    for name, s in r["solvers"].items():
        print(f"  {name:<22}{s['denoiser_calls']:>6}{s['action_error_m'] * 1000:>10.2f}{s['error_vs_ddim10']:>11.2f}x"
              f"{s['median_ms']:>11.2f}{s['p99_ms']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
