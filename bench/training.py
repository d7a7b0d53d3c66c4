#!/usr/bin/env python3
"""Training step time: the trainer before fused AdamW and bfloat16 autocast (for-each AdamW, diffusers'
per-parameter EMA loop, float32: the baseline) against fused AdamW with a for-each EMA in float32 (the
default now) and the same + ``train.precision: bf16``, on the same batch, each row its own copy of the
same initial weights, in interleaved rounds (every row once per round, in random order). A full step:
forward, loss, backward, optimizer, EMA.

What bf16 changes in what is learned, at the same weights and batch: the loss and the cosine between
the bf16 and the float32 gradients (1.0: the same direction).

    python bench/training.py                       # Meta-World DP3 (the benchmark's recipe), default DP3
    python bench/training.py --configs dp3 dp_image --batch 64 --rounds 10 --json
    python bench/training.py --threads 1     # one core: two trainings at once, one thread each
    python bench/training.py --configs metaworld_dp3 metaworld_dp3_paper --rounds 2   # the paper's width
"""
from __future__ import annotations

import argparse
import copy
import json
import sys

import torch

from common import interleaved_ms, machine

from diffusion_policy_ros import constants as C
from diffusion_policy_ros.config import load_config
from diffusion_policy_ros.policy import DiffusionPolicy
from diffusion_policy_ros.sim.metaworld_tasks import config_overrides
from diffusion_policy_ros.train.trainer import autocast, make_ema, make_optimizer

ROWS = {"baseline: for-each AdamW, fp32": (False, "fp32"),
        "fused AdamW, for-each EMA, fp32 (default)": (True, "fp32"),
        "the same, bf16 autocast": (True, "bf16")}
# metaworld_dp3_paper: the same at the DP3 paper's U-Net width (down_dims 512/1024/2048, 16x the default's
# multiply-adds): what its Meta-World recipe costs a step here.
CONFIGS = {"metaworld_dp3": ("dp3", config_overrides()),
           "metaworld_dp3_paper": ("dp3", [*config_overrides(), "policy.denoiser.down_dims=[512,1024,2048]"]),
           "dp3": ("dp3", []), "dp_image": ("dp_image", [])}


def random_batch(cfg, batch: int, gen: torch.Generator) -> dict:
    obs = {}
    for key, spec in cfg.policy.observations.items():
        x = torch.rand((batch, cfg.policy.n_obs_steps, *spec.shape), generator=gen)
        obs[key] = (x * 255).to(torch.uint8) if spec.type == C.OBS_RGB else x
    return {C.OBS: obs, C.ACTION: torch.rand((batch, cfg.policy.horizon, cfg.policy.action.dim), generator=gen)}


def build(cfg, batch: dict) -> DiffusionPolicy:
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    for key, x in {**batch[C.OBS], C.ACTION: batch[C.ACTION]}.items():
        if x.dtype != torch.uint8:
            model.normalizer.fit(key, x.reshape(-1, x.shape[-1]).float())
    return model.train()


def step_fn(model, cfg, batch, fused: bool, precision: str):
    device = torch.device("cpu")
    opt = make_optimizer(model.parameters(), cfg.train, fused=fused)
    ema = make_ema(model.parameters(), cfg.train, foreach=fused)  # the baseline: diffusers' per-parameter loop

    def step():
        with autocast(device, precision):
            loss = model.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.step(model.parameters())
    return step


def gradient_agreement(model, batch) -> dict:
    """Loss and gradient at the same weights, noise and timesteps, float32 against bf16 autocast."""
    out = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with autocast(torch.device("cpu"), precision):
            loss = model.compute_loss(batch)
        loss.backward()
        out[precision] = (loss.item(), torch.cat([p.grad.double().flatten() for p in model.parameters()
                                                  if p.grad is not None]))
    g32, g16 = out["fp32"][1], out["bf16"][1]
    return {"loss_fp32": round(out["fp32"][0], 5), "loss_bf16": round(out["bf16"][0], 5),
            "gradient_cosine": round(float(torch.nn.functional.cosine_similarity(g32, g16, dim=0)), 5),
            "gradient_relative_error": round(float((g16 - g32).norm() / g32.norm()), 4)}


def bench_config(name: str, batch_size: int, rounds: int) -> dict:
    base, overrides = CONFIGS[name]
    cfg = load_config(base, overrides=overrides)
    batch = random_batch(cfg, batch_size, torch.Generator().manual_seed(0))
    model0 = build(cfg, batch)
    steps = {row: step_fn(copy.deepcopy(model0), cfg, batch, *flags) for row, flags in ROWS.items()}
    times = interleaved_ms(steps, rounds, {})
    base_ms = times[next(iter(ROWS))]["median_ms"]
    rows = [{"row": row, **t, "samples_per_s": round(1000 * batch_size / t["median_ms"], 1),
             "speedup_vs_baseline": round(base_ms / t["median_ms"], 2)} for row, t in times.items()]
    return {"config": name, "batch": batch_size, "params_M": round(sum(p.numel() for p in model0.parameters()) / 1e6, 2),
            "rows": rows, "bf16": gradient_agreement(model0, batch)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["metaworld_dp3", "dp3"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one a core)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    results = [bench_config(name, a.batch, a.rounds) for name in a.configs]
    report = {"machine": machine(), "results": results}
    if a.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"machine: {report['machine']}")
    for r in results:
        print(f"\n{r['config']} ({r['params_M']} M parameters, batch {r['batch']}):")
        print(f"  {'row':<42} {'median ms':>10} {'p10-p90':>14} {'samples/s':>10} {'speed-up':>9}")
        for row in r["rows"]:
            print(f"  {row['row']:<42} {row['median_ms']:>10.1f} {row['p10_ms']:>6.0f}-{row['p90_ms']:<7.0f} "
                  f"{row['samples_per_s']:>10.1f} {row['speedup_vs_baseline']:>8.2f}x")
        b = r["bf16"]
        print(f"  bf16 at the same weights and batch: loss {b['loss_bf16']} vs {b['loss_fp32']} (fp32), "
              f"gradient cosine {b['gradient_cosine']}, relative error {b['gradient_relative_error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
