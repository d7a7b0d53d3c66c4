#!/usr/bin/env python3
"""Does a Meta-World policy go where the object is? For each evaluation seed, the first object's
starting position (Meta-World's observation, entries 4–6) and where the hand is after --step steps,
once under the scripted expert and once under the policy (DP3's loop: 3 actions a chunk, chunk i
sampled with seed i). Per axis, the least-squares slope of hand position against object position: the
expert's is near 1 on the axes it reaches along; a policy that ignores the object shows a slope near 0
there, and fails where the object starts far from the place it goes to anyway. Runs in .venv-metaworld.

    .venv-metaworld/bin/python bench/metaworld_conditioning.py --task stick-push \
        --checkpoint bench_out/mw-cover-3000-bf16/stick-push/run/checkpoint --seed 9000 --episodes 50 --step 28
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm


def expert_hand_after(env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(object start, hand position after ``steps``) under Meta-World's scripted expert."""
    obs = env.reset(seed)
    start = np.array(obs.raw[4:7], float)
    for _ in range(steps):
        obs = env.step(env.expert(obs))
    return start, np.array(obs.raw[:3], float)


def main() -> None:
    from diffusion_policy_ros.policy import Policy
    from diffusion_policy_ros.sim import metaworld_tasks as MW

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True, help="Meta-World task name, e.g. stick-push")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--seed", type=int, default=9000, help="first evaluation seed")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--step", type=int, default=28, help="compare the hands after this many steps (before contact)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.step < 1 or a.step > MW.EPISODE_STEPS:
        ap.error(f"--step: expected 1…{MW.EPISODE_STEPS}, got {a.step}")
    task = a.task if a.task.startswith(MW.PREFIX) else MW.PREFIX + a.task
    policy = Policy.from_checkpoint(a.checkpoint)
    env = MW.env_for_checkpoint(task, policy, a.checkpoint)
    starts, expert, learned = [], [], []
    try:
        for seed in tqdm(range(a.seed, a.seed + a.episodes), desc=task, unit="seed"):
            s, e = expert_hand_after(env, seed, a.step)
            r = MW.direct_episode(env, policy, seed, max_steps=a.step, stop_on_success=False)
            starts.append(s), expert.append(e), learned.append(r["hand"])
    finally:
        env.close()
    starts, expert, learned = map(np.array, (starts, expert, learned))
    axes = {}
    for i, name in enumerate("xyz"):
        if np.ptp(starts[:, i]) < 1e-3:  # the task does not move the object along this axis
            continue
        axes[name] = {"object_range_m": [round(float(starts[:, i].min()), 4), round(float(starts[:, i].max()), 4)],
                      "slope_expert": round(float(np.polyfit(starts[:, i], expert[:, i], 1)[0]), 2),
                      "slope_policy": round(float(np.polyfit(starts[:, i], learned[:, i], 1)[0]), 2),
                      "policy_hand_range_m": [round(float(learned[:, i].min()), 4),
                                              round(float(learned[:, i].max()), 4)]}
    out = {"task": task, "checkpoint": a.checkpoint, "seeds": [a.seed, a.seed + a.episodes - 1],
           "step": a.step, "axes": axes}
    if a.json:
        print(json.dumps(out, indent=2))
        return
    for name, r in axes.items():
        print(f"{task} hand {name} after {a.step} steps against the object's start {r['object_range_m']} m: slope "
              f"expert {r['slope_expert']}, policy {r['slope_policy']} (policy's hand {r['policy_hand_range_m']} m)")


if __name__ == "__main__":
    main()
