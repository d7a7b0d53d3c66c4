#!/usr/bin/env python3
"""Does force help on a contact task? Trains both arms of the press comparison (vision only: `dp3`;
vision + force: `dp3_force`) on the same demonstrations and budget, then evaluates both on a held-out
seed block with a fixed sampling seed. Every step is a `dpros` command (printed as it runs), cached in
--out: a rerun skips what exists.

    python bench/press_force.py                       # collect, train both (~1 h on 2 cores), evaluate
    python bench/press_force.py --force-checkpoint press_dp3_force   # reuse the shipped force policy
    python bench/press_force.py --json
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

RECIPE = ["--variant", "small", "--set", "train.max_steps={steps}", "--set", "policy.action.representation=rel_ee",
          "--set", "policy.action.pose_key=agent_pos"]
ARMS = {"vision": "dp3", "vision+force": "dp3_force"}
DPROS = [sys.executable, "-m", "diffusion_policy_ros.cli"]


def dpros(args: list[str], threads: int | None = None, capture: bool = False) -> str:
    print("$ dpros " + shlex.join(args), file=sys.stderr, flush=True)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.run(DPROS + args, env=env, check=True, text=True,
                          stdout=subprocess.PIPE if capture else sys.stderr)
    return proc.stdout if capture else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_out/press_force"))
    ap.add_argument("--demos", type=int, default=100, help="demonstrations (seeds 1000 and up)")
    ap.add_argument("--steps", type=int, default=5000, help="training steps per arm")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=8000, help="first evaluation seed (held out: never tuned on)")
    ap.add_argument("--sampling-seed", type=int, default=0)
    ap.add_argument("--force-checkpoint", default=None, help="skip training the force arm: use this checkpoint")
    ap.add_argument("--vision-checkpoint", default=None, help="skip training the vision arm: use this checkpoint")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training (both train side by side)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = args.out / "press.zarr"
    if not (dataset / "meta" / "episode_ends").exists():
        dpros(["collect", "--task", "press", "--episodes", str(args.demos), "--seed", "1000", "--out", str(dataset),
               "--no-progress"])
    given = {"vision": args.vision_checkpoint, "vision+force": args.force_checkpoint}
    checkpoints, training = {}, []
    for arm, config in ARMS.items():
        if given[arm]:
            checkpoints[arm] = given[arm]
            continue
        run = args.out / f"train_{config}"
        checkpoints[arm] = str(run / "checkpoint")
        if not (run / "checkpoint" / "model.safetensors").exists():
            cmd = ["train", config, "--dataset", str(dataset), "--out", str(run), "--no-progress",
                   *[a.format(steps=args.steps) for a in RECIPE]]
            print("$ dpros " + shlex.join(cmd), file=sys.stderr, flush=True)
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            training.append(subprocess.Popen(DPROS + cmd, env=env, stdout=sys.stderr))
    if any(p.wait() for p in training):
        print("training failed", file=sys.stderr)
        return 1
    results = {}
    for arm, ckpt in checkpoints.items():
        out = args.out / f"eval_{arm.replace('+', '_')}"
        text = dpros(["sim-eval", "--task", "press", "--checkpoint", ckpt, "--episodes", str(args.episodes),
                      "--seed", str(args.seed), "--set", "sampling.replan_steps=2",
                      "--set", f"sampling.seed={args.sampling_seed}", "--out", str(out), "--no-progress",
                      "--json"], capture=True)
        results[arm] = {"checkpoint": ckpt, **json.loads(text)}
    report = {"task": "press", "demo_seeds": [1000, 1000 + args.demos - 1], "train_steps": args.steps,
              "eval_seeds": [args.seed, args.seed + args.episodes - 1], "sampling_seed": args.sampling_seed,
              "arms": results}
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"press, seeds {args.seed}–{args.seed + args.episodes - 1}, sampling seed {args.sampling_seed}")
    for arm, r in results.items():
        print(f"  {arm:<14} {r['successes']}/{r['episodes']}  ({r['checkpoint']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
