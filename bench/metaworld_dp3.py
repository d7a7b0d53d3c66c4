#!/usr/bin/env python3
"""Meta-World under 3D Diffusion Policy's protocol, task by task beside the DP3 paper's Table XVIII.
For each task: 10 expert demonstrations (seeds 1000 and up, failures skipped), `dpros train dp3` at a
stated budget, `dpros sim-eval` on held-out seeds (9000 and up, never used for demonstrations or
tuning) with a fixed sampling seed; `--policies dp3 dp_image` adds the Diffusion Policy column
(colour images from the same camera, the same recipe), `--policies dp_image` trains that column alone.
Every step is a `dpros` command (printed as it runs), cached in --out: a rerun skips what exists, so tasks
can be added one at a time. Runs in .venv-metaworld
(`make bench-metaworld`); writes results.json, table.md and metaworld.png to --out.

    make bench-metaworld                                   # the six tasks (~15 min each on 2 cores)
    .venv-metaworld/bin/python bench/metaworld_dp3.py --tasks hammer stick-push --json
    make bench-metaworld BENCH_ARGS="--tasks hammer drawer-open --jobs 2 --steps 6000 --precision bf16 --out bench_out/mw-6000-bf16"
    make bench-metaworld BENCH_ARGS="--tasks drawer-open --pool 100 --demo-seed 2000 --steps 3000 --precision bf16 \
        --out bench_out/mw-cover-3000-bf16"                # demonstrations spread over the initial conditions
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# DP3 paper (arXiv 2403.03954, Table XVIII, Meta-World v2, 10 demonstrations): DP3, Diffusion Policy.
PAPER = {"button-press": (100, 99), "drawer-open": (100, 93), "door-open": (99, 98), "coffee-push": (94, 67),
         "hammer": (76, 15), "stick-push": (97, 63)}
DPROS = [sys.executable, "-m", "diffusion_policy_ros.cli"]


def dpros(args: list[str], capture: bool = False, threads: int = 0) -> str:
    print("$ dpros " + shlex.join(args), file=sys.stderr, flush=True)
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in that process
    proc = subprocess.run(DPROS + args, env=env, check=True, text=True,
                          stdout=subprocess.PIPE if capture else sys.stderr)
    return proc.stdout if capture else ""


def train_args(policy: str, dataset: Path, run: Path, a) -> list[str]:
    from diffusion_policy_ros.sim.metaworld_tasks import config_overrides, image_config_overrides

    fit = config_overrides(a.points) if policy == "dp3" else image_config_overrides(a.rgb_size)
    sets = fit + [f"train.max_steps={a.steps}", f"train.batch_size={a.batch}", f"train.lr={a.lr}",
                  f"train.warmup_steps={a.warmup}", f"train.precision={a.precision}", *a.train_set]
    return ["train", policy, "--dataset", str(dataset), "--out", str(run), "--no-progress",
            *[x for s in sets for x in ("--set", s)]]


def train_and_evaluate(policy: str, d: Path, dataset: Path, a) -> dict:
    """One column of one row: cached run, its training record and its evaluation."""
    tag = "" if policy == "dp3" else f"_{policy}"
    direct = "_direct" if a.evaluation == "direct" else ""
    run, train_json, eval_json = d / f"run{tag}", d / f"train{tag}.json", d / f"eval{tag}{direct}.json"
    if not train_json.exists():
        cmd = train_args(policy, dataset, run, a)
        t0 = time.monotonic()
        dpros(cmd, threads=a.threads)
        train_json.write_text(json.dumps({"command": "dpros " + shlex.join(cmd), "steps": a.steps,
                                          "batch": a.batch, "lr": a.lr, "precision": a.precision,
                                          "minutes": (time.monotonic() - t0) / 60}))
        for old in d.glob(f"eval{tag}*.json"):  # a new checkpoint: evaluate again
            old.unlink()
    trained = json.loads(train_json.read_text())
    if not eval_json.exists():
        out = dpros(["sim-eval", "--task", f"metaworld/{d.name}", "--checkpoint", str(run / "checkpoint"),
                     "--episodes", str(a.episodes), "--seed", str(a.seed), "--no-progress", "--json",
                     *(["--direct"] if direct else [])], capture=True, threads=a.threads)
        eval_json.write_text(out)
    ev = json.loads(eval_json.read_text())
    return {"successes": ev["successes"], "episodes": ev["episodes"], "success_rate": ev["success_rate"],
            "ci95": ev["ci95"], "eval_seeds": ev["seeds"], "sampling_seed": ev["sampling_seed"],
            "crop": ev.get("crop", "world"), "train": trained, "p50_inference_ms": ev["p50_inference_ms"],
            "evaluation": ev.get("evaluation", "direct")}


def run_task(task: str, a) -> dict:
    d = a.out / task
    d.mkdir(parents=True, exist_ok=True)
    dataset, collect_json = d / "demos.zarr", d / "collect.json"
    if not collect_json.exists():
        out = dpros(["collect", "--task", f"metaworld/{task}", "--episodes", str(a.demos), "--seed",
                     str(a.demo_seed), "--num-points", str(a.points), "--crop", a.crop, "--rgb-size",
                     str(a.rgb_size), "--episode-end", a.episode_end, "--pool", str(a.pool),
                     "--out", str(dataset), "--overwrite",
                     "--no-progress", "--json"], capture=True, threads=a.threads)
        collect_json.write_text(out)
    collected = json.loads(collect_json.read_text())
    dp3, dp = PAPER.get(task, (None, None))
    row = {"task": task, "demo_seeds": collected["seeds"],
           "demo_steps": collected["steps"], "episode_end": collected.get("episode_end", "success"),
           "demo_pool": collected.get("pool", 0), "demo_kept_seeds": collected.get("kept_seeds"),
           "paper_dp3": dp3, "paper_dp": dp}
    if "dp3" in a.policies:  # DP3's figures at the row's top level, as before the image column existed
        row.update(train_and_evaluate("dp3", d, dataset, a))
        row["gap_to_dp3_points"] = None if dp3 is None else round(100 * row["success_rate"] - dp3, 1)
    if "dp_image" in a.policies:
        row["dp_image"] = train_and_evaluate("dp_image", d, dataset, a)
    return row


def first_run(row: dict) -> dict:
    """The row's DP3 figures, or its image policy's where DP3 was not run (crop, seeds, training)."""
    return row if "successes" in row else row["dp_image"]


def rate(run: dict | None) -> str:
    return f"{run['successes']}/{run['episodes']} ({100 * run['success_rate']:.0f} %)" if run else "not run"


def table(rows: list[dict]) -> str:
    lines = ["| task | crop | training | evaluation | ours (DP3) | 95 % interval | DP3 paper | gap | ours (DP, image) "
             "| DP paper |", "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        run = first_run(r)
        t = run["train"]
        dp3 = "successes" in r
        ours = f"**{rate(r)}**" if dp3 else rate(None)
        interval = f"{100 * r['ci95'][0]:.1f}–{100 * r['ci95'][1]:.1f} %" if dp3 else ""
        gap = "" if r.get("gap_to_dp3_points") is None else f"{r['gap_to_dp3_points']:+.0f}"
        lines.append(f"| {r['task']} | {run['crop']} | {t['steps']} steps, batch {t['batch']} "
                     f"({t['minutes']:.0f} min) | {run['evaluation']} | {ours} | {interval} | "
                     f"{r['paper_dp3'] if r['paper_dp3'] is not None else '—'} | "
                     f"{gap} | {rate(r.get('dp_image'))} | {r['paper_dp'] if r['paper_dp'] is not None else '—'} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 4, 3.5))
    bars = []
    if any("successes" in r for r in rows):  # each "ours" column only where it was trained
        ours = np.array([100 * r.get("success_rate", 0) for r in rows])
        err = np.array([[100 * (r["success_rate"] - r["ci95"][0]), 100 * (r["ci95"][1] - r["success_rate"])]
                        if "successes" in r else [0, 0] for r in rows]).T
        bars.append((ours, err, "ours, DP3 (95 % interval)"))
    bars.append(([r["paper_dp3"] or 0 for r in rows], None, "DP3 paper (v2)"))
    if any(r.get("dp_image") for r in rows):
        bars.append(([100 * r["dp_image"]["success_rate"] if r.get("dp_image") else 0 for r in rows], None,
                     "ours, Diffusion Policy (image)"))
    bars.append(([r["paper_dp"] or 0 for r in rows], None, "Diffusion Policy paper (v2)"))
    w = 0.8 / len(bars)
    for i, (h, e, label) in enumerate(bars):
        ax.bar(x + (i - (len(bars) - 1) / 2) * w, h, w, yerr=e, capsize=3 if e is not None else 0, label=label)
    ax.set_xticks(x, [r["task"] for r in rows])
    ax.set_ylabel("success %")
    ax.set_ylim(0, 105)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside: never over a bar
    run = first_run(rows[0])
    ax.set_title(f"Meta-World v3, 10 demonstrations, {run['crop']} crop, evaluation seeds "
                 f"{run['eval_seeds'][0]}–{run['eval_seeds'][1]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(PAPER), help="Meta-World task names (any of the 50)")
    ap.add_argument("--out", type=Path, default=Path("bench_out/metaworld"))
    ap.add_argument("--demos", type=int, default=10)
    ap.add_argument("--demo-seed", type=int, default=1000)
    ap.add_argument("--points", type=int, default=512)
    ap.add_argument("--crop", choices=("dp3", "world"), default="dp3", help="dpros collect --crop")
    ap.add_argument("--rgb-size", type=int, default=84, help="dpros collect --rgb-size (dp_image's images)")
    ap.add_argument("--episode-end", choices=("full", "success"), default="success",
                    help="dpros collect --episode-end")
    ap.add_argument("--pool", type=int, default=0, help="dpros collect --pool (0: consecutive demonstration seeds)")
    ap.add_argument("--policies", nargs="+", choices=("dp3", "dp_image"), default=["dp3"],
                    help="columns to train: dp3 (3D Diffusion Policy), dp_image (Diffusion Policy, colour images)")
    ap.add_argument("--steps", type=int, default=1500, help="training steps per task")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", default="3.0e-4")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                    help="one more `dpros train --set` (repeatable), e.g. policy.denoiser.down_dims=[512,1024,2048]")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="train.precision")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=9000, help="first evaluation seed (held out)")
    ap.add_argument("--evaluation", choices=("runtime", "direct"), default="runtime",
                    help="runtime: through PolicyRuntime (dpros sim-eval's default); direct: DP3's own loop (--direct)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="tasks run at once, each with cores/jobs torch threads (2 on 2 cores: ~1.2x the "
                         "throughput of one task on both, bench/training.py --threads 1)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error(f"--jobs: expected >= 1, got {a.jobs}")
    a.threads = max(1, (os.cpu_count() or 1) // a.jobs) if a.jobs > 1 else 0
    if a.seed < a.demo_seed + max(5 * a.demos, a.pool) and a.demo_seed < a.seed + a.episodes:
        ap.error(f"--seed: evaluation seeds {a.seed}… overlap the demonstration seeds {a.demo_seed}…")
    a.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(a.jobs) as pool:  # each task's work runs in its own dpros processes
        rows = list(pool.map(lambda t: run_task(t, a), a.tasks))
    (a.out / "results.json").write_text(json.dumps(rows, indent=2))
    (a.out / "table.md").write_text(table(rows))
    plot(rows, a.out / "metaworld.png")
    print(json.dumps(rows, indent=2) if a.json else table(rows) + f"\n(results.json, table.md, metaworld.png in {a.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
