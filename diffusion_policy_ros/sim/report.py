"""What a person looks at after ``sim-eval``: a rollout video, a plot of every episode (the task draws
it: cube paths from above for push, force over time for press), a table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def draw_paths(ax, episodes, what: str) -> None:
    """Each episode's trace (x, y, ...) from above: blue when it succeeded, red when not, a dot at its start."""
    for e in episodes:
        c = np.asarray(e.trace)
        colour = "tab:blue" if e.success else "tab:red"
        ax.plot(c[:, 0], c[:, 1], color=colour, lw=1, alpha=0.8)
        ax.plot(c[0, 0], c[0, 1], "o", color=colour, ms=3)
    ax.plot([], [], color="tab:blue", label=f"{what}, success")
    ax.plot([], [], color="tab:red", label=f"{what}, failure")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_aspect("equal")


def write_video(path: Path, episodes, fps: int = 10) -> Path:
    """The recorded episodes one after another (MP4 through imageio-ffmpeg, else GIF)."""
    import imageio.v2 as imageio

    frames = [f for e in episodes for f in (e.frames + e.frames[-1:] * 5)]  # a short pause after each
    try:
        import imageio_ffmpeg  # noqa: F401

        path = path.with_suffix(".mp4")
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=8)
    except ImportError:
        path = path.with_suffix(".gif")
        imageio.mimwrite(path, frames, duration=1.0 / fps)
    return path


def plot_paths(path: Path, task, episodes, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    task.plot(ax, episodes)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def results_table(summary: dict) -> str:
    lo, hi = summary["ci95"]
    rows = [
        "| task | embodiment | episodes | success | 95 % CI | p50 / p99 cycle ms | holds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {summary['task']} | {summary['embodiment']} | {summary['episodes']} | "
        f"{100 * summary['success_rate']:.1f} % | {100 * lo:.1f}–{100 * hi:.1f} % | "
        f"{summary['p50_latency_ms']:.0f} / {summary['p99_latency_ms']:.0f} | {summary['holds']} |",
    ]
    return "\n".join(rows)


def write_report(out: Path, task, episodes, summary: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    recorded = [e for e in episodes if e.frames]
    if recorded:
        files["video"] = str(write_video(out / "rollouts", recorded))
    files["plot"] = str(plot_paths(out / "paths.png", task, episodes,
                                   f"{summary['task']}: {summary['successes']}/{summary['episodes']} successes"))
    (out / "results.md").write_text(results_table(summary) + "\n")
    files["table"] = str(out / "results.md")
    (out / "results.json").write_text(json.dumps({**summary, "files": files}, indent=2))
    files["json"] = str(out / "results.json")
    return files
