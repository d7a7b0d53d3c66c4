#!/usr/bin/env python3
"""Do a Meta-World policy's failures start outside what was demonstrated? For each run (an evaluation's
eval.json and the demonstrations it was trained on), every evaluation seed's distance from the nearest
demonstration's initial condition (Meta-World's random object and goal positions, metres), the failures
among the farthest seeds against what chance would put there, and a plot of the initial conditions with
each episode's outcome. Runs in .venv-metaworld; the runs come from `make bench-metaworld`.

    .venv-metaworld/bin/python bench/metaworld_coverage.py \
        --run bench_out/mw-3000-bf16/drawer-open/eval.json bench_out/mw-3000-bf16/drawer-open/demos.zarr \
        --run bench_out/mw-cover-3000-bf16/drawer-open/eval9100.json bench_out/mw-cover-3000-bf16/drawer-open/demos.zarr \
        --plot docs/metaworld_coverage.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def analyse(eval_path: Path, demos_path: Path, farthest: int) -> dict:
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.sim import metaworld_tasks as MW

    result = json.loads(eval_path.read_text())
    provenance = ReplayBuffer.open(demos_path).provenance
    if provenance.get("task") != result["task"]:
        raise SystemExit(f"{demos_path}: demonstrations of {provenance.get('task')!r}, "
                         f"but {eval_path} evaluates {result['task']!r}")
    demo_seeds = [int(s) for s in provenance["kept_seeds"]]
    detail = result["episodes_detail"]
    seeds = [int(d["seed"]) for d in detail]
    success = np.array([bool(d["success"]) for d in detail])
    env = MW.MetaWorldTask(result["task"], rgb_size=0)
    try:
        gaps = MW.distance_to_demonstrations(env, demo_seeds, seeds)
        demo_points = np.stack([env.initial_condition_of(s) for s in demo_seeds])
        eval_points = np.stack([env.initial_condition_of(s) for s in seeds])
    finally:
        env.close()
    k = min(farthest, len(seeds))
    far = np.argsort(-gaps)[:k]
    failures = int((~success).sum())
    # Success on either side of each varied dimension's median: which part of the reset space fails.
    halves = []
    for i, v in enumerate(eval_points.T):
        m, low = float(np.median(v)), v <= np.median(v)
        halves.append({"dimension": i, "range_m": [round(float(v.min()), 3), round(float(v.max()), 3)],
                       "median_m": round(m, 3), "successes_at_or_below": f"{int(success[low].sum())}/{int(low.sum())}",
                       "successes_above": f"{int(success[~low].sum())}/{int((~low).sum())}"})
    return {
        "eval": str(eval_path), "demos": str(demos_path), "task": result["task"], "demo_seeds": demo_seeds,
        "eval_seeds": [seeds[0], seeds[-1]], "successes": int(success.sum()), "episodes": len(seeds),
        "farthest": k, "failures_among_farthest": int((~success[far]).sum()),
        "chance_among_farthest": round(failures * k / len(seeds), 2),
        "mean_gap_cm_failures": round(float(gaps[~success].mean()) * 100, 2) if failures else None,
        "mean_gap_cm_successes": round(float(gaps[success].mean()) * 100, 2) if success.any() else None,
        "max_gap_cm": round(float(gaps.max()) * 100, 2),
        "failed_seeds": [s for s, ok in zip(seeds, success) if not ok], "halves": halves,
        "_points": (demo_points, eval_points, success),
    }


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.6 + 1.4 * len(rows)), squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        demos, points, ok = r["_points"]
        two = points.shape[1] >= 2
        y_demo = demos[:, 1] if two else np.zeros(len(demos))
        y_eval = points[:, 1] if two else np.zeros(len(points))
        ax.scatter(points[ok, 0], y_eval[ok], marker="o", s=22, c="tab:green", alpha=0.6, label="success")
        ax.scatter(points[~ok, 0], y_eval[~ok], marker="x", s=40, c="tab:red", label="failure")
        ax.scatter(demos[:, 0], y_demo, marker="|" if not two else "^", s=300 if not two else 60, c="black",
                   label="demonstration")
        first, last = r["eval_seeds"]
        ax.set_title(f"{r['task']}: {r['successes']}/{r['episodes']}, seeds {first}–{last}, "
                     f"demonstrations {min(r['demo_seeds'])}–{max(r['demo_seeds'])}", fontsize=9)
        ax.set_xlabel("initial condition, first varying dimension (m)")
        if two:
            ax.set_ylabel("second (m)")
        else:
            ax.set_yticks([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs=2, action="append", required=True, metavar=("EVAL_JSON", "DEMOS_ZARR"),
                    help="an evaluation (dpros sim-eval --json output) and the demonstrations it was trained on")
    ap.add_argument("--farthest", type=int, default=10, help="how many of the farthest evaluation seeds to count")
    ap.add_argument("--plot", type=Path, help="write the initial conditions and outcomes here (PNG)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [analyse(Path(e), Path(d), args.farthest) for e, d in args.run]
    if args.plot:
        plot(rows, args.plot)
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    if args.json:
        print(json.dumps(public, indent=2))
        return
    for r in public:
        print(f"{r['task']} {r['eval']}: {r['successes']}/{r['episodes']}; failures among the {r['farthest']} seeds "
              f"farthest from a demonstration: {r['failures_among_farthest']} (chance {r['chance_among_farthest']}); "
              f"mean distance failures {r['mean_gap_cm_failures']} cm, successes {r['mean_gap_cm_successes']} cm, "
              f"farthest {r['max_gap_cm']} cm")
        for h in r["halves"]:
            print(f"  reset dimension {h['dimension']} ({h['range_m'][0]}…{h['range_m'][1]} m): successes at or below "
                  f"its median {h['median_m']} m {h['successes_at_or_below']}, above {h['successes_above']}")


if __name__ == "__main__":
    main()
