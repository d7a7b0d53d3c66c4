#!/usr/bin/env python3
"""DP3's own success metric on one of our Meta-World runs, beside our held-out one.

DP3's Meta-World runner (YanjieZe/3D-Diffusion-Policy, env_runner/metaworld_runner.py) evaluates 20
episodes every 200 of its 3000 epochs and reports ``SR_test_L5``: the mean of the 5 highest of those
15 success rates (the paper then averages 3 training seeds). Picking the best evaluations on the episodes
being scored reads higher than one final checkpoint on held-out episodes, which is what our table reports.
This script measures that metric on a run trained with ``train.snapshot_every`` (the EMA policy kept along
training): each snapshot is evaluated through the runtime on its own --episodes fresh seeds (snapshot i
on seeds --seed + i·episodes: DP3's runner also sees new random episodes each time), and it prints the
mean of the 5 (and 3) highest, the last snapshot's rate, and what selection alone adds: the expected
mean of the 5 highest of as many 20-episode evaluations of one policy whose true rate is the final
checkpoint's (--held-out: its evaluation on held-out seeds, e.g. the bench's eval.json; else the last
snapshot's --episodes; binomial draws, fixed generator). Several --run (the same demonstrations trained with
other `train.seed`s): each run's figures, then the paper's, the mean and standard deviation over the runs.
Runs in .venv-metaworld.

    make bench-metaworld BENCH_ARGS="--tasks drawer-open --steps 3000 --precision bf16 \\
        --train-set train.snapshot_every=200 --out bench_out/mw-snap-3000-bf16"
    .venv-metaworld/bin/python bench/metaworld_paper_metric.py --task drawer-open \\
        --run bench_out/mw-snap-3000-bf16/drawer-open/run --held-out bench_out/mw-snap-3000-bf16/drawer-open/eval.json \\
        --jobs 2 --plot docs/metaworld_paper_metric.png
    .venv-metaworld/bin/python bench/metaworld_paper_metric.py --task coffee-push --run RUN_A RUN_B RUN_C \\
        --seed 10600 11200 11500 --held-out A.json B.json C.json   # three training seeds, each on its own seeds
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from metaworld_dp3 import PAPER, dpros

TOP = (5, 3)  # DP3's SR_test_L5 (the paper's) and SR_test_L3


def top_mean(rates, k: int) -> float:
    return float(np.mean(sorted(rates, reverse=True)[:k]))


def selection_alone(rate: float, evaluations: int, episodes: int, k: int, draws: int = 100_000) -> float:
    """Expected mean of the k highest of ``evaluations`` success rates, each from ``episodes`` episodes
    of one policy whose true rate is ``rate``."""
    rng = np.random.default_rng(0)
    r = rng.binomial(episodes, rate, size=(draws, evaluations)) / episodes
    return float(np.sort(r, axis=1)[:, -k:].mean())


def measure(task: str, run: Path, seed: int, held_out: Path | None, a) -> dict:
    """DP3's metric on one training run: its snapshots evaluated on consecutive blocks of fresh seeds."""
    snaps = sorted((run / "snapshots").glob("step_*"))
    if len(snaps) < max(TOP):
        raise SystemExit(f"--run: expected at least {max(TOP)} snapshots in {run / 'snapshots'} "
                         f"(train with --set train.snapshot_every=N), got {len(snaps)}")
    threads = max(1, (os.cpu_count() or 1) // a.jobs) if a.jobs > 1 else 0
    cache = run / "paper_metric"
    cache.mkdir(exist_ok=True)

    def evaluate(i_snap):
        i, snap = i_snap
        first = seed + i * a.episodes
        out = cache / f"{snap.name}_seed{first}_n{a.episodes}.json"
        if not out.exists():
            out.write_text(dpros(["sim-eval", "--task", f"metaworld/{task}", "--checkpoint", str(snap),
                                  "--episodes", str(a.episodes), "--seed", str(first), "--no-progress", "--json"],
                                 capture=True, threads=threads))
        ev = json.loads(out.read_text())
        return {"snapshot": snap.name, "step": int(snap.name.split("_")[1]), "seeds": ev["seeds"],
                "successes": ev["successes"], "success_rate": ev["success_rate"]}

    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        evals = list(pool.map(evaluate, enumerate(snaps)))
    rates = [e["success_rate"] for e in evals]
    last = rates[-1]
    res = {"task": task, "run": str(run), "episodes_per_snapshot": a.episodes,
           "seeds": [evals[0]["seeds"][0], evals[-1]["seeds"][1]], "evaluations": evals,
           "last": last, "paper_dp3": PAPER.get(task, (None, None))[0]}
    true_rate = last
    if held_out:
        ev = json.loads(held_out.read_text())
        res["held_out"] = {k: ev[k] for k in ("checkpoint", "seeds", "successes", "episodes", "success_rate", "ci95")}
        true_rate = ev["success_rate"]
    res["selection_rate"] = true_rate  # the rate selection alone is modelled at
    for k in TOP:
        res[f"top{k}_mean"] = top_mean(rates, k)
        res[f"top{k}_selection_alone"] = selection_alone(true_rate, len(rates), a.episodes, k)
    return res


def across_runs(results: list[dict]) -> dict:
    """The paper's figure: the mean and standard deviation (numpy's, ddof 0) over training runs of each
    run's mean of the k highest evaluations, and the same for the held-out and last rates."""
    out = {"runs": len(results)}
    for k in TOP:
        v = np.array([r[f"top{k}_mean"] for r in results])
        out[f"top{k}_mean"], out[f"top{k}_std"] = float(v.mean()), float(v.std())
    v = np.array([r["last"] for r in results])
    out["last_mean"], out["last_std"] = float(v.mean()), float(v.std())
    if all("held_out" in r for r in results):
        n = sum(r["held_out"]["episodes"] for r in results)
        out["held_out_successes"], out["held_out_episodes"] = sum(r["held_out"]["successes"] for r in results), n
        v = np.array([r["held_out"]["success_rate"] for r in results])
        out["held_out_mean"], out["held_out_std"] = float(v.mean()), float(v.std())
    return out


def report(res: dict) -> None:
    evals, last = res["evaluations"], res["last"]
    print(f"{res['task']} ({res['run']}): {len(evals)} snapshots × {res['episodes_per_snapshot']} episodes "
          f"(seeds {res['seeds'][0]}–{res['seeds'][1]})")
    print("  " + "  ".join(f"{e['step']}:{e['successes']}" for e in evals))
    print(f"  mean of the 5 highest (DP3's SR_test_L5, the paper's metric): {100 * res['top5_mean']:.1f} %"
          f" (3 highest: {100 * res['top3_mean']:.1f} %)")
    if "held_out" in res:
        h = res["held_out"]
        print(f"  final checkpoint on held-out seeds {h['seeds'][0]}–{h['seeds'][1]}: {h['successes']}/{h['episodes']}"
              f" ({100 * h['success_rate']:.1f} %)")
    print(f"  last snapshot: {100 * last:.1f} %; selection alone at the final rate "
          f"({100 * res['selection_rate']:.1f} %): 5 highest {100 * res['top5_selection_alone']:.1f} %, "
          f"3 highest {100 * res['top3_selection_alone']:.1f} %")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help="Meta-World task name, e.g. drawer-open")
    ap.add_argument("--run", type=Path, nargs="+", required=True,
                    help="dpros train output folders holding snapshots/; several (training seeds): the paper's "
                         "mean and std over them")
    ap.add_argument("--episodes", type=int, default=20, help="episodes per snapshot (DP3: 20)")
    ap.add_argument("--seed", type=int, nargs="+", default=[10000],
                    help="first evaluation seed of each run (snapshot i starts at seed + i*episodes); one value: "
                         "the runs take consecutive blocks from it")
    ap.add_argument("--jobs", type=int, default=1, help="snapshots evaluated at once (cores/jobs threads each)")
    ap.add_argument("--held-out", type=Path, nargs="+",
                    help="each run's final checkpoint's sim-eval --json on held-out seeds, in --run's order")
    ap.add_argument("--plot", type=Path, help="success along training, the metric and the paper's number")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    task = a.task.removeprefix("metaworld/")
    if a.episodes < 1:
        ap.error(f"--episodes: expected >= 1, got {a.episodes}")
    if len(a.seed) not in (1, len(a.run)):
        ap.error(f"--seed: expected 1 or {len(a.run)} values (one per --run), got {len(a.seed)}")
    if a.held_out and len(a.held_out) != len(a.run):
        ap.error(f"--held-out: expected {len(a.run)} files (one per --run), got {len(a.held_out)}")
    if len(a.seed) == 1:  # consecutive blocks: each run needs as many seeds as it has snapshots × episodes
        seeds, nxt = [], a.seed[0]
        for run in a.run:
            seeds.append(nxt)
            nxt += len(list((run / "snapshots").glob("step_*"))) * a.episodes
    else:
        seeds = a.seed
    results = [measure(task, run, seed, held, a)
               for run, seed, held in zip(a.run, seeds, a.held_out or [None] * len(a.run))]
    res = results[0] if len(results) == 1 else {"task": task, "per_run": results, **across_runs(results),
                                                "paper_dp3": results[0]["paper_dp3"]}
    if a.plot:
        plot(results, res, a.plot)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    for r in results:
        report(r)
    if len(results) > 1:
        print(f"  over {len(results)} runs: mean of the 5 highest {100 * res['top5_mean']:.1f} ± "
              f"{100 * res['top5_std']:.1f} % (3 highest {100 * res['top3_mean']:.1f} ± {100 * res['top3_std']:.1f} %)"
              + (f"; held-out {res['held_out_successes']}/{res['held_out_episodes']}"
                 f" ({100 * res['held_out_mean']:.1f} ± {100 * res['held_out_std']:.1f} %)" if "held_out_mean" in res
                 else ""))
    if res["paper_dp3"] is not None:
        print(f"  DP3 paper: {res['paper_dp3']} %")
    return 0


def plot(results: list[dict], res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.4))
    for j, r in enumerate(results):
        steps = [e["step"] for e in r["evaluations"]]
        name = "ours" if len(results) == 1 else f"run {j + 1}"
        ax.plot(steps, [100 * e["success_rate"] for e in r["evaluations"]], "o-", color=f"C{2 * j}", ms=3,
                label=f"{name}, {r['episodes_per_snapshot']} episodes a snapshot; 5 highest {100 * r['top5_mean']:.0f} %")
        if "held_out" in r:
            h = r["held_out"]
            lo, hi = 100 * h["ci95"][0], 100 * h["ci95"][1]
            y = 100 * h["success_rate"]
            ax.errorbar([steps[-1] + 40 * j], [y], yerr=[[y - lo], [hi - y]], fmt="s", color=f"C{2 * j}", capsize=3,
                        label=f"{name} final, held-out seeds {h['seeds'][0]}–{h['seeds'][1]}: {y:.0f} %")
    mean = f"{100 * res['top5_mean']:.0f} %" + ("" if len(results) == 1 else f" ± {100 * res['top5_std']:.0f}")
    ax.axhline(100 * res["top5_mean"], color="C1", ls="--", label=f"mean of 5 highest: {mean}")
    if res["paper_dp3"] is not None:
        ax.axhline(res["paper_dp3"], color="k", ls=":", label=f"DP3 paper: {res['paper_dp3']} %")
    ax.set_xlabel("training step")
    ax.set_ylabel("success %")
    ax.set_ylim(0, 105)
    ax.set_title(f"metaworld/{res['task']}: DP3's metric along training", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
