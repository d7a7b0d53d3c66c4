"""Success statistics of closed-loop episodes: rates with Wilson intervals, latency percentiles,
hand-over figures, and the report files."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from .env import Episode


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (sensible at 0 % and 100 %, unlike mean ± 1.96·se)."""
    if n == 0:
        return 0.0, 1.0
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)


def paired_flips(base: dict, other: dict) -> dict:
    """Two evaluations of the same seeds ({seed: success}): how many passed in ``base`` and failed in
    ``other`` (lost) and the reverse (gained), with the exact McNemar p-value (two-sided binomial test on
    the discordant seeds): whether a difference in success is more than the seeds reshuffling."""
    from scipy.stats import binomtest

    common = sorted(set(base) & set(other))
    if not common:
        raise ValueError("paired_flips: the two evaluations share no seed")
    lost = [s for s in common if base[s] and not other[s]]
    gained = [s for s in common if other[s] and not base[s]]
    n = len(lost) + len(gained)
    p = binomtest(len(lost), n, 0.5).pvalue if n else 1.0
    return {"seeds": len(common), "lost": lost, "gained": gained, "mcnemar_p": float(p)}


def sampling_noise(outcomes: dict) -> dict:
    """The same seeds run under several sampling seeds ({sampling_seed: {seed: success}}): for each pair
    of sampling seeds, how many seeds change outcome when nothing but the sampling seed changes. The
    floor a comparison of two settings (say two latencies) must clear before its lost and gained seeds
    mean anything: on a policy whose outcome a different noise sample flips, they are that noise."""
    keys = sorted(outcomes)
    if len(keys) < 2:
        raise ValueError(f"sampling_noise: expected outcomes under at least 2 sampling seeds, got {keys}")
    changed = {}
    for a, b in itertools.combinations(keys, 2):
        r = paired_flips(outcomes[a], outcomes[b])
        changed[f"{a}-{b}"] = len(r["lost"]) + len(r["gained"])
    return {"seeds": len(set.intersection(*(set(o) for o in outcomes.values()))), "changed": changed,
            "changed_mean": float(np.mean(list(changed.values())))}


def summarize(task, embodiment: str, checkpoint, eps: list[Episode], seed: int, latencies_ms: list[float],
              wall_s: float, out: str | Path | None, **extra) -> dict:
    wins = sum(e.success for e in eps)
    lat = np.asarray(latencies_ms if latencies_ms else [np.nan])
    summary = {"task": task.name, "embodiment": embodiment, "checkpoint": str(checkpoint), "episodes": len(eps),
               "seeds": [seed, seed + len(eps) - 1], "successes": wins, "success_rate": wins / max(1, len(eps)),
               "ci95": list(wilson_ci95(wins, len(eps))), "p50_latency_ms": float(np.percentile(lat, 50)),
               "p99_latency_ms": float(np.percentile(lat, 99)), "holds": sum(e.holds for e in eps),
               "first_point_in_past": sum(e.first_point_in_past for e in eps),
               "max_handover_jump_rad" if task.embodiment == "arm" else "max_handover_jump_m":
                   max((e.max_handover_jump for e in eps), default=0.0),
               "late_chunks": sum(e.late for e in eps),
               "contact_stops": sum(e.contact_stops for e in eps),
               "p50_publish_latency_ms": float(np.percentile([m for e in eps for m in e.latency_ms] or [np.nan], 50)),
               "wall_s": wall_s, **extra,
               "per_episode": [{"seed": e.seed, "success": e.success, "steps": e.steps,
                                "max_handover_jump": round(e.max_handover_jump, 5),
                                **({"failure": e.failure} if e.failure else {})} for e in eps]}
    if out is not None:
        from .report import write_report

        summary["files"] = write_report(Path(out), task, eps, summary)
    return summary
