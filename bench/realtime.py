#!/usr/bin/env python3
"""Success versus inference latency: what a robot gets when the policy takes D ms to answer.

Each episode runs in the MuJoCo simulator with inference charged D ms of sim time (``dpros sim-eval
--delay-ms D``): the arm keeps executing the running trajectory under the joint_trajectory_controller-
faithful follower while the next chunk is computed. Execution modes compared in the same run:

  before         the timing before real-time execution, as the baseline: every chunk stamped and
                 scheduled as if published when its observation was taken (late first points: JTC jumps)
  sync           stamped from the publish time; inference every n_action_steps (or replan_steps) periods
  async_blend    inference starts when the running chunk's remaining time falls to the predicted
                 latency + margin, the chunk extended by the latency; the scheduler's blend only
  async_rtc      the same + real-time chunking guidance (diffusion/chunking.py) + temporal ensembling
                 (timing.ensemble 0.5) — the default
  async_rtc_replace  async_rtc with each new chunk replacing the running one (timing.ensemble 1.0)
  async_inpaint  the same + replacement inpainting of the frozen prefix
  async_rtc_noext  async_rtc without the latency extension (execution.extend_by_latency false)
  async_rtc_guard  async_rtc + the contact guard (safety.max_contact_force 17 N: the press band's top,
                 18 N, less the overshoot of one 50 Hz wrench tick); for force tasks
  async_prefix   the frozen prefix given clean to a checkpoint trained with prefix conditioning
                 (policy.max_prefix_steps > 0; pass it with --checkpoint TASK=PATH)

Per task its shipped checkpoint and recipe (push; press_dp3_force_rt with replan_steps=1; reach_fast guided by
flight clearance, --guidance 3), a fixed sampling seed, and a seed block never used for tuning
(default 5000–5049; the execution settings were tuned on 7000–7009).

    python bench/realtime.py                                 # table + plot in bench_out/realtime/
    python bench/realtime.py --tasks push --episodes 10      # quicker
    python bench/realtime.py --json                          # {"success_by_delay": {task: {mode: {delay: rate}}}, ...}
    python bench/realtime.py --tasks press --modes async_rtc,async_rtc_guard   # the contact guard
    python bench/realtime.py --action-latency-ms 20          # publish → controller 20 ms instead of the config's 50
    python bench/realtime.py --tasks press --checkpoint press=runs/press/checkpoint   # your own checkpoint
    python bench/realtime.py --tasks press --set timing.ensemble=0.3   # a config override on every run
    python bench/realtime.py --tasks reach_fast --sampling-seeds 0,1,2  # each cell under 3 sampling seeds

The JSON also lists each cell's failed seeds (with the reason) and, per delay, the seeds lost and gained
against 0 ms with McNemar's exact p (``paired_vs_0ms``): the same seeds run at both, so a gap can be
told apart from seeds reshuffling. With several ``--sampling-seeds`` each cell pools the episodes of
every sampling seed (the rate, its interval and the paired comparison over (seed, sampling seed) pairs;
the interval treats them as independent, which they are not quite: the same scenes), lists the rate
under each (``by_sampling_seed``) and, per delay, how many seeds change outcome when only the sampling
seed changes (``sampling_noise``): the floor the lost and gained seeds against 0 ms must clear.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import machine

from diffusion_policy_ros.cli import _parse_sets
from diffusion_policy_ros.sim.closed_loop import evaluate
from diffusion_policy_ros.sim.stats import paired_flips, sampling_noise, wilson_ci95

TASKS = {  # task → (shipped checkpoint, its recipe's overrides)
    "push": ("push_dp3", {}),
    "press": ("press_dp3_force_rt", {"sampling.replan_steps": 1}),
    "reach_fast": ("reach_fast_dp3", {"guidance.strength": 3.0}),
}
MODES = {  # mode → (overrides, stamp_from_observation)
    "before": ({"execution.mode": "sync", "execution.consistency": "none", "timing.ensemble": 1.0}, True),
    "sync": ({"execution.mode": "sync", "execution.consistency": "none"}, False),
    "async_blend": ({"execution.mode": "async", "execution.consistency": "none"}, False),
    "async_rtc": ({"execution.mode": "async", "execution.consistency": "rtc"}, False),
    "async_inpaint": ({"execution.mode": "async", "execution.consistency": "inpaint"}, False),
    "async_rtc_noext": ({"execution.mode": "async", "execution.consistency": "rtc",
                         "execution.extend_by_latency": False}, False),
    "async_rtc_guard": ({"execution.mode": "async", "execution.consistency": "rtc", "safety.max_contact_force": 17.0},
                        False),
    "async_prefix": ({"execution.mode": "async", "execution.consistency": "prefix"}, False),
    "async_rtc_replace": ({"execution.mode": "async", "execution.consistency": "rtc", "timing.ensemble": 1.0}, False),
}
DEFAULT_MODE = "async_rtc"
CELL_KEYS = ("success_by_delay", "ci95", "first_point_in_past", "max_handover_jump", "late_chunks", "contact_stops",
             "failed_seeds", "paired_vs_0ms", "by_sampling_seed", "sampling_noise")  # task → mode → delay → value
EXTRA_MODES = ("async_rtc_noext", "async_rtc_guard", "async_prefix", "async_rtc_replace")  # run when asked for (--modes)


def run(tasks, modes, delays, episodes: int, seed: int, progress: bool, action_latency_ms: float | None = None,
        checkpoints: dict | None = None, extra: dict | None = None,
        sampling_seeds=(0,)) -> dict:
    """``checkpoints``: task → a checkpoint to run instead of the shipped one (same recipe); ``extra``:
    config overrides on top of every run's (``--set``); ``sampling_seeds``: each cell runs under each."""
    from diffusion_policy_ros.config import resolve_shipped_checkpoint

    out = {"machine": machine(), "seeds": [seed, seed + episodes - 1], "episodes": episodes, "delays_ms": delays,
           "sampling_seeds": list(sampling_seeds), "default_mode": DEFAULT_MODE,
           "action_latency_ms": action_latency_ms if action_latency_ms is not None else "the sim config's",
           **{key: {} for key in CELL_KEYS}, "wall_s": {}, "overrides": extra or {}}
    timing = {} if action_latency_ms is None else {"timing.action_latency_s": action_latency_ms / 1000}
    for task in tasks:
        ckpt, recipe = TASKS[task]
        ckpt = str(resolve_shipped_checkpoint((checkpoints or {}).get(task, ckpt)))
        out.setdefault("checkpoints", {})[task] = ckpt
        for key in CELL_KEYS:
            out[key][task] = {}
        for mode in modes:
            overrides, stamp_obs = MODES[mode]
            for key in CELL_KEYS:
                out[key][task][mode] = {}
            outcomes = {}  # delay → {(seed, sampling seed) key: success}
            for d in delays:
                t0 = time.perf_counter()
                cells = []
                for ss in sampling_seeds:
                    cfg = {**recipe, **overrides, **timing, "sampling.seed": ss, **(extra or {})}
                    cells.append(evaluate(task, ckpt, episodes, seed=seed, overrides=cfg, progress=progress, delay=d,
                                          stamp_from_observation=stamp_obs))
                key = (lambda seed, ss: seed) if len(sampling_seeds) == 1 else (lambda seed, ss: f"{seed}@{ss}")
                eps = [(ss, e) for ss, c in zip(sampling_seeds, cells) for e in c["per_episode"]]
                wins, n = sum(e["success"] for _, e in eps), len(eps)
                jumps = [c.get("max_handover_jump_rad", c.get("max_handover_jump_m")) for c in cells]
                out["success_by_delay"][task][mode][d] = wins / n
                out["ci95"][task][mode][d] = wilson_ci95(wins, n)
                out["first_point_in_past"][task][mode][d] = sum(c["first_point_in_past"] for c in cells)
                out["max_handover_jump"][task][mode][d] = max(jumps)
                out["late_chunks"][task][mode][d] = sum(c["late_chunks"] for c in cells)
                out["contact_stops"][task][mode][d] = sum(c["contact_stops"] for c in cells)
                outcomes[d] = {key(e["seed"], ss): e["success"] for ss, e in eps}
                out["failed_seeds"][task][mode][d] = {key(e["seed"], ss): e.get("failure", "") for ss, e in eps
                                                      if not e["success"]}
                if len(sampling_seeds) > 1:
                    out["by_sampling_seed"][task][mode][d] = {ss: c["success_rate"]
                                                              for ss, c in zip(sampling_seeds, cells)}
                    per_seed = {ss: {e["seed"]: e["success"] for e in c["per_episode"]}
                                for ss, c in zip(sampling_seeds, cells)}
                    out["sampling_noise"][task][mode][d] = sampling_noise(per_seed)
                out["wall_s"][f"{task}/{mode}/{d}"] = round(time.perf_counter() - t0, 1)
                print(f"{task:10s} {mode:16s} {d:>4} ms: {wins:>2}/{n} "
                      f"first-in-past {out['first_point_in_past'][task][mode][d]:>4}  max jump {max(jumps):.3f}  "
                      f"late {out['late_chunks'][task][mode][d]}", file=sys.stderr, flush=True)
            if 0 in outcomes:  # the same seeds at 0 ms and at d: lost / gained seeds, McNemar's exact p
                for d in delays:
                    if d != 0:
                        out["paired_vs_0ms"][task][mode][d] = paired_flips(outcomes[0], outcomes[d])
        if DEFAULT_MODE in modes and 0 in delays and any(d >= 200 for d in delays):
            rates = out["success_by_delay"][task][DEFAULT_MODE]
            out.setdefault("target_met", {})[task] = all(rates[0] - rates[d] <= 0.05 for d in delays if d >= 200)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result["success_by_delay"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for mode, rates in result["success_by_delay"][task].items():
            d = sorted(rates)
            ci = result["ci95"][task][mode]
            y = [100 * rates[x] for x in d]
            err = [[v - 100 * ci[x][0] for v, x in zip(y, d)], [100 * ci[x][1] - v for v, x in zip(y, d)]]
            shift = 4 * (list(result["success_by_delay"][task]).index(mode))  # ms: keeps the bars apart
            ax.errorbar([x + shift for x in d], y, yerr=err, marker="o", capsize=3, label=mode,
                        color=f"C{list(MODES).index(mode)}", lw=2.5 if mode == DEFAULT_MODE else 1.2)
        ax.set_title(task)
        ax.set_xlabel("inference latency (ms, sim time)")
        ax.set_ylabel("success %")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
    for ax in axes[0]:
        ax.legend(fontsize=7)
    fig.suptitle(f"success vs latency (95 % intervals)\nseeds {result['seeds'][0]}–{result['seeds'][1]}, "
                 f"sampling seeds {','.join(map(str, result['sampling_seeds']))}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--modes", default=",".join(m for m in MODES if m not in EXTRA_MODES),
                    help=f"comma-separated, of {list(MODES)} (default: all but {list(EXTRA_MODES)})")
    ap.add_argument("--delays", default="0,100,200,400", help="ms, comma-separated")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--sampling-seeds", default="0",
                    help="comma-separated sampling seeds; each cell runs under each and pools them (default 0)")
    ap.add_argument("--out", default="bench_out/realtime")
    ap.add_argument("--action-latency-ms", type=float, default=None,
                    help="timing.action_latency_s in ms (publish → controller); default: the sim config's (50)")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="TASK=PATH",
                    help="run this checkpoint for TASK instead of the shipped one (its recipe stays); repeatable")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override on top of every run's (e.g. timing.ensemble=0.5); repeatable")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    extra = _parse_sets(args.set)
    checkpoints = dict(c.split("=", 1) for c in args.checkpoint if "=" in c)
    if len(checkpoints) != len(args.checkpoint) or set(checkpoints) - set(TASKS):
        ap.error(f"--checkpoint: expected TASK=PATH with TASK in {list(TASKS)}, got {args.checkpoint}")
    tasks, modes = args.tasks.split(","), args.modes.split(",")
    unknown = sorted(set(tasks) - set(TASKS)) + sorted(set(modes) - set(MODES))
    if unknown:
        ap.error(f"unknown tasks/modes {unknown}: expected tasks {list(TASKS)}, modes {list(MODES)}")
    delays = [int(x) for x in args.delays.split(",")]
    sampling_seeds = [int(x) for x in args.sampling_seeds.split(",")]
    if len(sampling_seeds) > 1 and "sampling.seed" in extra:
        ap.error("--set sampling.seed would override every --sampling-seeds value: give one or the other")
    result = run(tasks, modes, delays, args.episodes, args.seed, args.progress, args.action_latency_ms, checkpoints,
                 extra, sampling_seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "realtime.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "success_vs_delay.png")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"success rate by inference latency, seeds {result['seeds'][0]}-{result['seeds'][1]}, sampling seeds "
          f"{args.sampling_seeds}, {args.episodes * len(sampling_seeds)} episodes each ({out}/success_vs_delay.png)")
    print(f"{'task':10s} {'mode':16s} " + " ".join(f"{d:>7} ms" for d in delays))
    for task, per_mode in result["success_by_delay"].items():
        for mode, rates in per_mode.items():
            print(f"{task:10s} {mode:16s} " + " ".join(f"{100 * rates[d]:>8.0f}%" for d in delays))
    for task, per_mode in result["paired_vs_0ms"].items():
        for mode, per_delay in per_mode.items():
            for d, r in per_delay.items():
                print(f"{task} {mode} {d} ms against 0 ms, same seeds: lost {len(r['lost'])}, gained "
                      f"{len(r['gained'])}, McNemar p = {r['mcnemar_p']:.2f}")
    for task, per_mode in result["sampling_noise"].items():
        for mode, per_delay in per_mode.items():
            for d, r in per_delay.items():
                print(f"{task} {mode} {d} ms, only the sampling seed changed: {r['changed_mean']:.1f} of {r['seeds']} "
                      f"seeds change outcome (mean over pairs {r['changed']})")
    for task, ok in result.get("target_met", {}).items():
        print(f"{task}: {DEFAULT_MODE} within 5 points of its 0 ms success at >= 200 ms: {'yes' if ok else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
