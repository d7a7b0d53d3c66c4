#!/usr/bin/env python3
"""Per-chunk inference latency (encode + denoise) and action quality of the fast samplers.

Headline (the default DP3 config, batch 1): Diffusion Policy's own loop (real-stanford/diffusion_policy's
DiffusionUnetHybridImagePolicy.predict_action → conditional_sample: torch.no_grad, obs dict reshaped
per key, a condition-mask write before every model call, eager modules) at DDPM-100 (its default) and
at DDIM-10 (the same solver as our default: the fair ratio), against Policy.predict on the default hot
path (traced denoiser) at DDIM-10, DPM-Solver++ 5/4 and warm start. Latency on untrained weights (it
does not depend on their values), timed in interleaved rounds (every row once per round, in random
order) with medians and the 10–90 % spread. Action error of every row, its own loop included: position
RMSE over the executed steps to the nearest of R DDPM-100 samples, on the shipped trained `push_dp3`
(dp3:small) over windows of fresh simulator demonstrations, and on a multimodal two-mode checkpoint
(`--multimodal DIR`, a `dpros modes-demo --out DIR` folder); ``error_vs_ddpm100`` divides it by
DDPM-100's own error against the references (another draw). Default DP3 cannot be trained to
convergence on a 2-core CPU in a bench run.

Then, for every (config, solver): ours against the baseline loop at the same solver and steps.

    python bench/inference.py                 # tables
    python bench/inference.py --json          # {"speedup_vs_dp_same_solver", "headline", "results", ...}
    python bench/inference.py --quick         # small variants, few rounds (smoke check)
    python bench/inference.py --headline-only --multimodal bench_out/modes
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import interleaved_ms, machine

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
                     generator: torch.Generator, full_horizon: bool = False) -> np.ndarray:
    """Diffusion Policy's predict_action → conditional_sample, step for step (world-frame actions)."""
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
    action_pred = model.to_world(trajectory, obs)
    if full_horizon:
        return action_pred.cpu().numpy()
    start = to - 1
    return action_pred[:, start:start + cfg.n_action_steps].cpu().numpy()


def bench_config(name: str, variant: str | None, runs: int, solvers) -> dict:
    cfg = load_config(name, variant=variant)
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    obs = {k: v[None] for k, v in fake_observation(cfg.policy, np.random.default_rng(0)).items()}
    params = sum(p.numel() for p in model.parameters())
    from diffusion_policy_ros.model.export import available

    exported = [b for b in ("onnxruntime", "openvino") if available(b)]
    out = {}
    for solver, steps in solvers:
        row = ("ours", solver, steps, 0)
        calls = {"ours": lambda: sample_row(policy, row, obs, 0),
                 "baseline": lambda: sample_row(policy, ("dp", *row[1:]), obs, 0)}
        for b in exported:
            calls[b] = lambda b=b: sample_row(policy, (b, *row[1:]), obs, 0)
        t = interleaved_ms(calls, runs, {})
        ours, base = t["ours"], t["baseline"]
        out[f"{solver}_{steps}"] = {
            "solver": solver, "steps": steps, "runs": runs,
            "median_ms": ours["median_ms"], "p10_ms": ours["p10_ms"], "p90_ms": ours["p90_ms"],
            "p99_ms": ours["p99_ms"], "baseline_median_ms": base["median_ms"], "baseline_p99_ms": base["p99_ms"],
            "speedup_vs_baseline": round(base["median_ms"] / ours["median_ms"], 3),
        }
        for b in exported:
            out[f"{solver}_{steps}"].update({f"{b}_median_ms": t[b]["median_ms"],
                                             f"{b}_speedup_vs_baseline": round(base["median_ms"] / t[b]["median_ms"], 3)})
    ddpm = out.get("ddpm_100")
    if ddpm:  # Diffusion Policy's default sampler, for perspective
        for r in out.values():
            r["speedup_vs_baseline_ddpm_100"] = round(ddpm["baseline_median_ms"] / r["median_ms"], 2)
    return {"config": name + (f":{variant}" if variant else ""), "parameters_m": round(params / 1e6, 2),
            "solvers": out}


# Headline rows: name → (loop, solver, steps, warm start index). "dp": Diffusion Policy's own loop
# (baseline_predict, eager); "ours": Policy.predict with the traced torch denoiser; "onnxruntime" /
# "openvino": Policy.predict with the denoiser exported there (inference.backend; skipped where the
# package is not installed).
HEADLINE = {"dp_loop_ddpm_100": ("dp", "ddpm", 100, 0), "dp_loop_ddim_10": ("dp", "ddim", 10, 0),
            "ddim_10": ("ours", "ddim", 10, 0), "ddim_10_onnxruntime": ("onnxruntime", "ddim", 10, 0),
            "ddim_10_openvino": ("openvino", "ddim", 10, 0),
            "dpmsolver++_5": ("ours", "dpmsolver++", 5, 0),
            "dpmsolver++_4": ("ours", "dpmsolver++", 4, 0), "ddim_10_warm5": ("ours", "ddim", 10, 5),
            "ddim_10_warm7": ("ours", "ddim", 10, 7), "student_1": ("student", "ddim", 1, 0)}
# "student": a `dpros distill` student (one trailing DDIM step, the default backend). Its latency is timed
# on the same untrained default-DP3 network run that way; its error on the distilled students of the
# checkpoints the errors are measured on (--student, --multimodal-student).


def sample_row(policy: Policy, row: tuple, obs: dict[str, np.ndarray], seed: int, prev: np.ndarray | None = None
               ) -> np.ndarray:
    """Full-horizon world-frame chunks (B, H, Da) for batched observations, by one headline row's method."""
    loop, solver, steps, k = row
    if loop == "dp":
        gen = torch.Generator().manual_seed(seed)
        obs_t = {key: torch.from_numpy(v) for key, v in obs.items()}
        return baseline_predict(policy.model, obs_t, policy.model.inference_scheduler(solver), steps, gen,
                                full_horizon=True)
    inf = policy.cfg.inference
    inf.solver, inf.num_inference_steps, inf.trace = solver, steps, True
    inf.timestep_spacing = "trailing" if loop == "student" else "default"
    inf.backend = loop if loop in ("onnxruntime", "openvino") else "auto" if loop == "student" else "torch"
    kw = dict(warm_start=prev, shift=policy.cfg.n_action_steps, start_index=k) if k else {}
    return policy.predict(obs, seed=seed, full_horizon=True, **kw)


def action_errors(checkpoint: Path, dataset: Path, windows: int, refs: int, seed: int,
                  student: Path | None = None) -> dict:
    """Every headline row's action error on a trained checkpoint: position RMSE over the executed steps to
    the nearest of ``refs`` DDPM-100 samples (our loop) on the same dataset windows, and DDPM-100's own
    error (another draw, other noise) as the floor; ``error_vs_ddpm100`` = a row's error / that floor."""
    from solver_quality import nearest_rmse, obs_of, window_pairs

    from diffusion_policy_ros.data import PolicyDataset

    policy = Policy.from_checkpoint(checkpoint)
    cfg = policy.cfg
    ds = PolicyDataset.from_path(dataset, cfg)
    sl = slice(cfg.n_obs_steps - 1, cfg.n_obs_steps - 1 + cfg.n_action_steps)
    pairs = window_pairs(ds, cfg.n_action_steps, windows, seed)
    ddpm = ("ours", "ddpm", 100, 0)
    from diffusion_policy_ros.model.export import available

    rows = {n: r for n, r in HEADLINE.items() if r[0] in ("dp", "ours") or available(r[0])
            or (r[0] == "student" and student is not None)}
    if student is not None:
        from diffusion_policy_ros.config import resolve_shipped_checkpoint

        student = resolve_shipped_checkpoint(student)
    by_row = {n: (Policy.from_checkpoint(student) if r[0] == "student" else policy) for n, r in rows.items()}
    errors = {name: [] for name in ("ddpm_100", *rows)}
    for prev_i, cur_i in tqdm(pairs, desc=f"action error {Path(checkpoint).name}", file=sys.stderr):
        obs = obs_of(ds, cur_i, refs)
        ref = sample_row(policy, ddpm, obs, seed)
        prev = sample_row(policy, ("ours", "ddim", 10, 0), obs_of(ds, prev_i, refs), seed + 7)
        # The floor is a third draw: the rows' noise (seed + 1) would make Diffusion Policy's DDPM-100 loop
        # reproduce it exactly (same generator, same scheduler), a ratio of 1 by construction.
        errors["ddpm_100"].append(nearest_rmse(sample_row(policy, ddpm, obs, seed + 2), ref, sl))
        for name, row in rows.items():
            errors[name].append(nearest_rmse(sample_row(by_row[name], row, obs, seed + 1, prev), ref, sl))
    floor = float(np.mean(errors.pop("ddpm_100")))
    return {"checkpoint": str(checkpoint), "student": str(student) if student else None, "windows": len(pairs),
            "references": refs,
            "ddpm100_self_error_m": round(floor, 8),
            "rows": {name: {"action_error_m": round(float(np.mean(e)), 8),
                            "error_vs_ddpm100": round(float(np.mean(e)) / max(floor, 1e-12), 3)}
                     for name, e in errors.items()}}


def headline(rounds: int, windows: int, references: int, episodes: int, out_dir: Path,
             variant: str | None = None, multimodal: Path | None = None, student: Path | None = None,
             multimodal_student: Path | None = None) -> dict:
    """The default DP3 config: interleaved latency per headline row on untrained weights (latency does not
    depend on their values); action errors on push_dp3 (and a multimodal checkpoint if given)."""
    from diffusion_policy_ros.config import resolve_shipped_checkpoint

    cfg = load_config("dp3", variant=variant)
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    policy = Policy(model, cfg)
    from diffusion_policy_ros.model.export import available, resolve_backend

    inf = cfg.policy.inference
    rows_wanted = {n: r for n, r in HEADLINE.items() if r[0] in ("dp", "ours", "student") or available(r[0])}
    default = f"{inf.solver}_{inf.num_inference_steps}"
    if resolve_backend(inf.backend) != "torch":
        default += f"_{resolve_backend(inf.backend)}"
    if default not in rows_wanted or not inf.trace:
        raise SystemExit(f"the default sampler ({default}, trace={inf.trace}) is not a headline row: add it")
    obs = {k: v[None] for k, v in fake_observation(cfg.policy, np.random.default_rng(0)).items()}
    prev = sample_row(policy, HEADLINE["ddim_10"], obs, 1)
    calls = {name: (lambda row=row: sample_row(policy, row, obs, 0, prev)) for name, row in rows_wanted.items()}
    rows = interleaved_ms(calls, rounds, {"dp_loop_ddpm_100": 5})
    for name, (loop, solver, steps, k) in rows_wanted.items():
        rows[name].update(loop=loop, denoiser_calls=steps - k, default=name == default,
                          speedup_vs_dp_ddpm_100=round(rows["dp_loop_ddpm_100"]["median_ms"]
                                                       / rows[name]["median_ms"], 2))

    # Action error: push_dp3 on windows of fresh simulator demonstrations (seeds never trained on).
    dataset = out_dir / f"push_{episodes}.zarr"
    if not (dataset / "meta" / "episode_ends").exists():
        from diffusion_policy_ros.sim.experts import collect

        collect("push", episodes, dataset, seed=5000, overwrite=True, progress=False)
    quality = {"push_dp3": action_errors(resolve_shipped_checkpoint("push_dp3"), dataset, windows, references, 0,
                                         student)}
    if multimodal is not None:
        quality["multimodal"] = action_errors(multimodal / "train" / "checkpoint", multimodal / "dataset.zarr",
                                              windows, references, 0, multimodal_student)
    for key, q in quality.items():
        suffix = "" if key == "push_dp3" else f"_{key}"
        for name, r in q["rows"].items():
            rows[name][f"action_error_m{suffix}"] = r["action_error_m"]
            rows[name][f"error_vs_ddpm100{suffix}"] = r["error_vs_ddpm100"]
    return {"config": "dp3" + (f":{variant}" if variant else ""),
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "default_row": default, "rounds": rounds,
            "speedup_vs_dp_same_solver": round(rows["dp_loop_ddim_10"]["median_ms"] / rows[default]["median_ms"], 2),
            "speedup_vs_dp_default": rows[default]["speedup_vs_dp_ddpm_100"],
            "dp_ddim10_median_ms": rows["dp_loop_ddim_10"]["median_ms"],
            "student_median_ms": rows["student_1"]["median_ms"],
            "student_speedup_vs_dp_ddim10": round(rows["dp_loop_ddim_10"]["median_ms"]
                                                  / rows["student_1"]["median_ms"], 2),
            "quality": {k: {kk: vv for kk, vv in q.items() if kk != "rows"} for k, q in quality.items()},
            "rows": rows}


def print_headline(h: dict) -> None:
    q = h["quality"]["push_dp3"]
    print(f"{h['config']} ({h['parameters_m']} M parameters, batch 1), {h['rounds']} interleaved rounds. "
          f"Default ({h['default_row']}, traced) vs Diffusion Policy's loop at the same solver: "
          f"{h['speedup_vs_dp_same_solver']:.2f}x; vs its DDPM-100 default: {h['speedup_vs_dp_default']:.2f}x")
    print(f"Action error: position RMSE to the nearest of {q['references']} DDPM-100 samples on push_dp3, "
          f"{q['windows']} windows; DDPM-100 vs another DDPM-100 draw {q['ddpm100_self_error_m'] * 1000:.3f} mm")
    multi = "multimodal" in h["quality"]
    print(f"  {'row':<18}{'calls':>6}{'median ms':>11}{'p10-p90 ms':>16}{'vs DP DDPM':>11}{'error mm':>10}"
          f"{'vs DDPM':>9}" + (f"{'multimodal':>12}" if multi else ""))
    for name, r in h["rows"].items():
        mark = " *" if r["default"] else ""
        err = (f"{r['action_error_m'] * 1000:>10.3f}{r['error_vs_ddpm100']:>8.2f}x" if "action_error_m" in r
               else f"{'-':>10}{'-':>9}")
        line = (f"  {name + mark:<18}{r['denoiser_calls']:>6}{r['median_ms']:>11.1f}"
                f"{r['p10_ms']:>8.1f}-{r['p90_ms']:<7.1f}{r['speedup_vs_dp_ddpm_100']:>10.2f}x{err}")
        mm = r.get("error_vs_ddpm100_multimodal")
        print(line + ((f"{mm:>11.2f}x" if mm is not None else f"{'-':>12}") if multi else ""))
    print(f"One-step student: {h['student_median_ms']:.1f} ms, {h['student_speedup_vs_dp_ddim10']:.1f}x "
          f"Diffusion Policy's loop at DDIM-10")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=None, help="default: every shipped config")
    ap.add_argument("--variant", default=None, help="e.g. small")
    ap.add_argument("--runs", type=int, default=50, help="per-config table: runs per solver; headline: rounds")
    ap.add_argument("--quick", action="store_true", help="small variants, 5 runs, two solvers")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--headline-only", action="store_true", help="only the default-DP3 table")
    ap.add_argument("--no-headline", action="store_true", help="only the per-config table")
    ap.add_argument("--windows", type=int, default=24, help="dataset windows for the action error")
    ap.add_argument("--references", type=int, default=16, help="DDPM-100 samples per window")
    ap.add_argument("--episodes", type=int, default=6, help="simulator demonstrations the windows come from")
    ap.add_argument("--out", type=Path, default=Path("bench_out/inference"))
    ap.add_argument("--multimodal", type=Path, default=None,
                    help="a `dpros modes-demo --out` folder: action errors on its two-mode checkpoint too")
    ap.add_argument("--student", default="push_dp3_student",
                    help="push_dp3's distilled student for the student row's error (default: the shipped one)")
    ap.add_argument("--multimodal-student", type=Path, default=None,
                    help="the two-mode checkpoint's student (`dpros distill`; default: MULTIMODAL/student)")
    args = ap.parse_args(argv)
    head = None
    if not args.no_headline:
        args.out.mkdir(parents=True, exist_ok=True)
        from diffusion_policy_ros.config import resolve_shipped_checkpoint

        mm_student = args.multimodal_student or (args.multimodal / "student" if args.multimodal else None)
        mm_student = mm_student if mm_student is not None and mm_student.exists() else None
        head = headline(5 if args.quick else args.runs, args.windows, args.references, args.episodes, args.out,
                        variant="small" if args.quick else None, multimodal=args.multimodal,
                        student=resolve_shipped_checkpoint(args.student), multimodal_student=mm_student)
        if not args.json:
            print_headline(head)
    top = {} if head is None else {"speedup_vs_dp_same_solver": head["speedup_vs_dp_same_solver"],
                                   "speedup_vs_dp_default": head["speedup_vs_dp_default"],
                                   "dp_ddim10_median_ms": head["dp_ddim10_median_ms"],
                                   "student_median_ms": head["student_median_ms"],
                                   "student_speedup_vs_dp_ddim10": head["student_speedup_vs_dp_ddim10"],
                                   "headline": head}
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
                  f"{'vs DP DDPM-100':>16}{'onnxruntime ms':>16}{'openvino ms':>13}")
            for key, s in r["solvers"].items():
                vs_dp = s.get("speedup_vs_baseline_ddpm_100")
                vs_dp = f"{vs_dp:.1f}x" if vs_dp is not None else "-"
                ort_ms, ov_ms = s.get("onnxruntime_median_ms"), s.get("openvino_median_ms")
                print(f"  {key:<16}{s['median_ms']:>11.2f}{s['p99_ms']:>10.2f}{s['baseline_median_ms']:>13.2f}"
                      f"{s['speedup_vs_baseline']:>7.2f}x{vs_dp:>16}{(f'{ort_ms:.2f}' if ort_ms else '-'):>16}"
                      f"{(f'{ov_ms:.2f}' if ov_ms else '-'):>13}")
    if args.json:
        print(json.dumps({**top, "machine": machine(device="cpu"),
                          "results": {k: v["solvers"] for k, v in results.items()},
                          "parameters_m": {k: v["parameters_m"] for k, v in results.items()}}, indent=2))
    else:
        print(f"\nmachine: {machine(device='cpu')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
