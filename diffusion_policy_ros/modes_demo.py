"""`dpros modes-demo`: generate two-mode demonstrations, train a small policy with `dpros train`'s
trainer, sample many action chunks from the start state, plot and summarise (do the samples commit to
one mode instead of averaging them?). `make demo` runs the simulator instead (`dpros demo`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .config import load_config
from .data import ReplayBuffer
from .data.synthetic import ObstacleScene, make_obstacle_dataset
from .policy import Policy
from .train import Trainer

MODE_THRESHOLD = 0.045  # |mean lateral offset| beyond this = committed to a side (modes sit at ≈ ±0.09)


def mode_summary(offsets: np.ndarray) -> dict:
    left, right = offsets < -MODE_THRESHOLD, offsets > MODE_THRESHOLD
    return {"samples": int(len(offsets)), "left": int(left.sum()), "right": int(right.sum()),
            "in_a_mode": float((left | right).mean()), "mean_abs_offset": float(np.abs(offsets).mean())}


def plot_samples(scene: ObstacleScene, demos: np.ndarray, samples: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(5, 6))
    c, h = scene.box_center, scene.box_half
    ax.add_patch(Rectangle((c[0] - h[0], c[1] - h[1]), 2 * h[0], 2 * h[1], color="tab:blue", alpha=0.4,
                           label="box"))
    for i, d in enumerate(demos):
        ax.plot(d[:, 0], d[:, 1], color="0.6", lw=0.8, label="demonstrations" if i == 0 else None)
    for i, s in enumerate(samples):
        ax.plot(s[:, 0], s[:, 1], color="tab:red", lw=0.8, alpha=0.6, label="policy samples" if i == 0 else None)
    ax.plot(*scene.goal[:2], "g*", ms=14, label="goal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Sampled action chunks from the start state")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out: str | Path, config: str = "dp3", episodes: int = 100, max_steps: int | None = None,
             samples: int = 64, seed: int = 0) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"diffusion_policy_ros modes demo: this trains a small '{config}' policy on generated two-mode "
          "demonstrations (pass the box left or right) and checks that its samples commit to one mode instead of averaging them.")
    overrides = [f"train.max_steps={max_steps}"] if max_steps else []
    cfg = load_config(config, variant="small", overrides=overrides)
    n_points = cfg.policy.observations.get("point_cloud")
    scene = ObstacleScene(num_points=n_points.shape[0] if n_points else 256)
    dataset = make_obstacle_dataset(out / "dataset.zarr", n_episodes=episodes, seed=seed, scene=scene)
    print(f"[1/3] dataset: {dataset} ({episodes} episodes)")
    t0 = time.time()
    ckpt = Trainer(cfg, dataset, out / "train").run()
    train_s = time.time() - t0
    print(f"[2/3] trained {cfg.train.max_steps} steps in {train_s:.0f} s → {ckpt} (loss plot: {out / 'train/loss.png'})")

    policy = Policy.from_checkpoint(ckpt)
    obs = scene.policy_observation(cfg.policy, seed=seed)
    batch = {k: np.repeat(v[None], samples, axis=0) for k, v in obs.items()}
    t0 = time.time()
    chunks = policy.predict(batch, seed=seed, full_horizon=True)
    per_chunk_ms = (time.time() - t0) * 1e3 / samples
    summary = mode_summary(scene.lateral_offset(chunks))
    summary.update(train_seconds=round(train_s, 1), batched_ms_per_chunk=round(per_chunk_ms, 2),
                   checkpoint=str(ckpt), plot=str(out / "samples.png"))
    demos = ReplayBuffer.open(dataset)
    ends = demos.episode_ends
    states = demos.load(["state"])["state"]
    starts = np.concatenate(([0], ends[:-1]))
    plot_samples(scene, [states[s:e] for s, e in zip(starts[:20], ends[:20])], chunks, out / "samples.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[3/3] {samples} samples from the start state: {summary['left']} pass left, {summary['right']} "
          f"pass right, {summary['in_a_mode'] * 100:.0f}% committed to a mode (an averaging policy "
          f"would hit the box). Plot: {out / 'samples.png'}")
    return summary
