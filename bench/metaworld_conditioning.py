#!/usr/bin/env python3
"""Does a Meta-World policy go where the object is, and take it where the goal is? For each evaluation
seed, where things are after --step steps, once under the scripted expert and once under the policy (DP3's
loop: 3 actions a chunk, chunk i sampled with seed i), against where the episode put them at reset.
--against object (the default): the hand against the first object's start (Meta-World's observation,
entries 4-6); --against goal: the object against the goal (entries 36-38; pick a --step after the expert has
delivered it). Per axis, the least-squares slope: the expert's is near 1 on the axes it reaches or pushes
along; a policy that ignores the object (or the goal) shows a slope near 0 there, and fails where the
object (goal) lies far from the place it goes to anyway. Runs in .venv-metaworld.

    .venv-metaworld/bin/python bench/metaworld_conditioning.py --task stick-push \
        --checkpoint bench_out/mw-cover-3000-bf16/stick-push/run/checkpoint --seed 9000 --episodes 50 --step 28
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm


# What each --against compares: (the reference at reset, what should follow it after --step steps), as
# names of the slices of Meta-World's observation in metaworld_tasks.
MEASURES = {"object": ("RAW_OBJECT", "RAW_HAND"), "goal": ("RAW_GOAL", "RAW_OBJECT")}


def expert_after(env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Meta-World's observation at reset and after ``steps`` steps of its scripted expert."""
    obs = start = env.reset(seed)
    for _ in range(steps):
        obs = env.step(env.expert(obs))
    return np.array(start.raw, float), np.array(obs.raw, float)


def main() -> None:
    from diffusion_policy_ros.policy import Policy
    from diffusion_policy_ros.sim import metaworld_tasks as MW

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True, help="Meta-World task name, e.g. stick-push")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--seed", type=int, default=9000, help="first evaluation seed")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--step", type=int, default=28, help="compare after this many steps (28: before contact)")
    ap.add_argument("--against", choices=tuple(MEASURES), default="object",
                    help="object: the hand against the object's start; goal: the object against the goal")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.step < 1 or a.step > MW.EPISODE_STEPS:
        ap.error(f"--step: expected 1…{MW.EPISODE_STEPS}, got {a.step}")
    task = a.task if a.task.startswith(MW.PREFIX) else MW.PREFIX + a.task
    policy = Policy.from_checkpoint(a.checkpoint)
    env = MW.env_for_checkpoint(task, policy, a.checkpoint)
    ref, follower = (getattr(MW, name) for name in MEASURES[a.against])
    moved = "hand" if a.against == "object" else "object"
    starts, expert, learned = [], [], []
    try:
        for seed in tqdm(range(a.seed, a.seed + a.episodes), desc=task, unit="seed"):
            s, e = expert_after(env, seed, a.step)
            r = MW.direct_episode(env, policy, seed, max_steps=a.step, stop_on_success=False)
            assert np.allclose(s[ref], r["object_start"] if a.against == "object" else r["goal"])
            starts.append(s[ref]), expert.append(e[follower]), learned.append(r[moved])
    finally:
        env.close()
    starts, expert, learned = map(np.array, (starts, expert, learned))
    axes = {}
    for i, name in enumerate("xyz"):
        if np.ptp(starts[:, i]) < 5e-3:  # not varied by the reset along this axis (Meta-World jitters some by 2 mm)
            continue
        axes[name] = {f"{a.against}_range_m": [round(float(starts[:, i].min()), 4),
                                               round(float(starts[:, i].max()), 4)],
                      "slope_expert": round(float(np.polyfit(starts[:, i], expert[:, i], 1)[0]), 2),
                      "slope_policy": round(float(np.polyfit(starts[:, i], learned[:, i], 1)[0]), 2),
                      f"policy_{moved}_range_m": [round(float(learned[:, i].min()), 4),
                                                  round(float(learned[:, i].max()), 4)]}
    out = {"task": task, "checkpoint": a.checkpoint, "seeds": [a.seed, a.seed + a.episodes - 1],
           "step": a.step, "against": a.against, "axes": axes}
    if a.json:
        print(json.dumps(out, indent=2))
        return
    for name, r in axes.items():
        print(f"{task} {moved} {name} after {a.step} steps against the {a.against} at reset "
              f"{r[f'{a.against}_range_m']} m: slope expert {r['slope_expert']}, policy {r['slope_policy']} "
              f"(policy's {moved} {r[f'policy_{moved}_range_m']} m)")


if __name__ == "__main__":
    main()
