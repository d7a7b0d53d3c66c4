"""Shared by the bench scripts (run as `python bench/<name>.py`, so this imports as `common`)."""
from __future__ import annotations

import os
import platform
import time

import numpy as np


def time_ms(fn, runs: int, warmup: int = 3) -> np.ndarray:
    """Wall time of `fn()` in milliseconds, `runs` times after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e6
    return out


def machine(**extra) -> dict:
    import torch

    from diffusion_policy_ros.train.trainer import cpu_bf16_native

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": cpu_bf16_native(),
            "python": platform.python_version(), **extra}


def interleaved_ms(calls: dict, rounds: int, slow_every: dict, seed: int = 0) -> dict:
    """Wall ms of each call, timed in rounds that run every call once in a fresh random order (a slow
    phase of a shared machine hits every row alike). ``slow_every[name] = n``: that row only every n-th
    round. → name → {median_ms, p10_ms, p90_ms, p99_ms, runs}."""
    rng = np.random.default_rng(seed)
    for fn in calls.values():  # warm-up (traces, allocator)
        fn(), fn()
    times = {name: [] for name in calls}
    for r in range(rounds):
        for name in rng.permutation(list(calls)):
            if r % slow_every.get(name, 1) == 0:
                t0 = time.perf_counter_ns()
                calls[name]()
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {name: {"median_ms": round(float(np.median(t)), 2), "p10_ms": round(float(np.percentile(t, 10)), 2),
                   "p90_ms": round(float(np.percentile(t, 90)), 2), "p99_ms": round(float(np.percentile(t, 99)), 2),
                   "runs": len(t)} for name, t in times.items()}
