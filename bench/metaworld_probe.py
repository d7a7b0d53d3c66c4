#!/usr/bin/env python3
"""Does a trained point-cloud encoder carry where the goal (or the object) is? A linear probe: the
encoder's feature of the first cloud of each episode (what the U-Net is conditioned on) → the goal's
(or the object's) position at reset, fitted by ridge regression on --fit-seeds and scored on --seed …
(disjoint). The same probe on the same architecture at random initialisation (seeded, the checkpoint's
normaliser) is the baseline: a trained encoder that scores no better than a random one has not learned to
keep the position, and a trained encoder that keeps it to a few millimetres hands it to the denoiser,
which then either uses it or not (bench/metaworld_conditioning.py). Two features are probed: the 64-d
output (after the projection and its LayerNorm) and the max-pooled per-point feature before it.
Runs in .venv-metaworld.

    .venv-metaworld/bin/python bench/metaworld_probe.py --task coffee-push --against goal \
        --checkpoint bench_out/mw-cover-3000-fp32/coffee-push/run/checkpoint
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm import tqdm

TARGETS = ("object", "goal")
ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float):
    """Ridge on standardised features with an unpenalised intercept → (predict function)."""
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean(0)))
    return lambda q: ((q - mu) / sd) @ w + y.mean(0)


def pick_alpha(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """The ridge strength with the least k-fold error on the fit seeds alone."""
    idx = np.arange(len(x)) % folds
    errs = []
    for alpha in ALPHAS:
        sq = 0.0
        for f in range(folds):
            pred = ridge_fit(x[idx != f], y[idx != f], alpha)(x[idx == f])
            sq += float(((pred - y[idx == f]) ** 2).sum())
        errs.append(sq)
    return ALPHAS[int(np.argmin(errs))]


def features(model, key: str, clouds: np.ndarray) -> dict[str, np.ndarray]:
    """clouds (N, P, 3) → {'output': (N, D), 'pooled': (N, H)} of the model's encoder for ``key``."""
    enc = model.obs_encoder.encoders[key]
    with torch.no_grad():
        pts = model.normalizer.normalize(key, torch.as_tensor(clouds, dtype=torch.float32))
        out, per_point = enc(pts)
    return {"output": out.numpy(), "pooled": per_point.max(dim=1).values.numpy()}


def main() -> None:
    from diffusion_policy_ros import constants as C
    from diffusion_policy_ros.policy import DiffusionPolicy, Policy
    from diffusion_policy_ros.sim import metaworld_tasks as MW

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True, help="Meta-World task name, e.g. coffee-push")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--against", choices=TARGETS, default="goal")
    ap.add_argument("--fit-seeds", type=int, nargs=2, default=(7000, 100), metavar=("FIRST", "COUNT"),
                    help="seeds the probe is fitted on (default: the tuning block 7000-7099)")
    ap.add_argument("--seed", type=int, default=9000, help="first seed the probe is scored on")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--random-init-seed", type=int, default=0, help="torch seed of the untrained encoder")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    fit = range(a.fit_seeds[0], a.fit_seeds[0] + a.fit_seeds[1])
    test = range(a.seed, a.seed + a.episodes)
    if set(fit) & set(test):
        ap.error(f"--fit-seeds {a.fit_seeds[0]}…{fit[-1]} and --seed {a.seed}…{test[-1]} overlap")
    task = a.task if a.task.startswith(MW.PREFIX) else MW.PREFIX + a.task
    policy = Policy.from_checkpoint(a.checkpoint)
    keys = [k for k, s in policy.cfg.observations.items() if s.type == C.OBS_POINT_CLOUD]
    if not keys:
        ap.error(f"--checkpoint: expected a policy with a point-cloud observation, got "
                 f"{sorted(policy.cfg.observations)}")
    key = keys[0]
    dataset_key = policy.cfg.observations[key].dataset_key or key
    env = MW.env_for_checkpoint(task, policy, a.checkpoint)
    target = MW.RAW_OBJECT if a.against == "object" else MW.RAW_GOAL
    clouds, targets = {}, {}
    try:
        for name, seeds in (("fit", fit), ("test", test)):
            c, t = [], []
            for seed in tqdm(seeds, desc=f"{task} {name}", unit="seed"):
                obs = env.reset(seed)
                c.append(obs.observation(dataset_key)), t.append(np.array(obs.raw[target], float))
            clouds[name], targets[name] = np.stack(c), np.stack(t)
    finally:
        env.close()

    torch.manual_seed(a.random_init_seed)
    untrained = DiffusionPolicy.build(policy.cfg).eval()
    untrained.normalizer.load_state_dict(policy.model.normalizer.state_dict())
    axes = [i for i in range(3) if np.ptp(targets["fit"][:, i]) >= 5e-3]  # the axes the reset varies
    y_fit, y_test = targets["fit"][:, axes], targets["test"][:, axes]
    result = {"task": task, "checkpoint": a.checkpoint, "against": a.against, "observation": key,
              "fit_seeds": [fit[0], fit[-1]], "test_seeds": [test[0], test[-1]],
              "axes": ["xyz"[i] for i in axes],
              "target_std_mm": [round(float(s) * 1e3, 1) for s in y_test.std(0)], "probes": {}}
    for label, model in (("trained", policy.model), ("untrained", untrained)):
        f_fit, f_test = features(model, key, clouds["fit"]), features(model, key, clouds["test"])
        for feat in ("output", "pooled"):
            alpha = pick_alpha(f_fit[feat], y_fit)
            err = ridge_fit(f_fit[feat], y_fit, alpha)(f_test[feat]) - y_test
            rms = np.sqrt((err ** 2).mean(0))
            r2 = 1 - (err ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)
            result["probes"][f"{label}/{feat}"] = {"dim": int(f_fit[feat].shape[1]), "alpha": alpha,
                                                   "rms_mm": [round(float(v) * 1e3, 1) for v in rms],
                                                   "r2": [round(float(v), 3) for v in r2]}
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{task}: the {a.against} at reset from the '{key}' encoder's feature; fit on seeds "
          f"{fit[0]}-{fit[-1]}, scored on {test[0]}-{test[-1]}; axes {result['axes']}, "
          f"spread (std) {result['target_std_mm']} mm")
    for name, p in result["probes"].items():
        print(f"  {name:18s} ({p['dim']:3d}-d, alpha {p['alpha']:g}): rms {p['rms_mm']} mm, R² {p['r2']}")


if __name__ == "__main__":
    main()
