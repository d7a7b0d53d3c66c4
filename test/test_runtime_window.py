"""Observation window on integer-ns stamps: synchronisation, latency alignment, staleness, padding."""
import numpy as np
import pytest

from diffusion_policy_ros.errors import ObservationError
from diffusion_policy_ros.runtime.window import ObservationWindow, StaleObservationError, StreamSpec

MS = 1_000_000


def window(**kw):
    return ObservationWindow({"camera": StreamSpec(latency_ns=kw.get("cam_latency", 0), max_age_ns=100 * MS),
                              "joints": StreamSpec(max_age_ns=50 * MS)}, n_obs_steps=3, period_ns=100 * MS)


def test_samples_are_each_streams_latest_at_or_before_the_sample_times():
    w = window()
    for t in range(0, 1000, 33):  # camera 30 Hz
        w.add("camera", t * MS, t)
    for t in range(0, 1000, 2):  # joints 500 Hz
        w.add("joints", t * MS, t)
    obs, t_ref = w.sample(now_ns=1000 * MS)
    assert t_ref == 990 * MS  # the camera's newest stamp: the latest instant both streams reached
    assert list(obs["camera"]) == [759, 858, 990]  # frames every 33 ms: latest at or before 790, 890, 990
    assert list(obs["joints"]) == [790, 890, 990]
    for name, values in obs.items():  # never a sample from after its sample time
        assert all(v * MS <= t_ref - (2 - k) * 100 * MS for k, v in enumerate(values))


def test_latency_is_removed_before_matching():
    w = window(cam_latency=30 * MS)
    for t in range(0, 1000, 10):
        w.add("camera", t * MS, t)  # an image stamped t shows the world at t - 30
        w.add("joints", t * MS, t)
    obs, t_ref = w.sample(now_ns=1000 * MS)
    assert t_ref == 960 * MS
    assert list(obs["camera"]) == [790, 890, 990]  # stamps, i.e. world times 760, 860, 960
    assert list(obs["joints"]) == [760, 860, 960]


def test_random_streams_never_leak_future_samples():
    rng = np.random.default_rng(0)
    for trial in range(200):
        w = ObservationWindow({"a": StreamSpec(max_age_ns=10**12), "b": StreamSpec(max_age_ns=10**12)}, 2, 50)
        ta = np.cumsum(rng.integers(1, 40, 30))
        tb = np.cumsum(rng.integers(1, 40, 30))
        for t in ta:
            w.add("a", int(t), int(t))
        for t in tb:
            w.add("b", int(t), int(t))
        obs, t_ref = w.sample(now_ns=int(max(ta[-1], tb[-1])))
        assert t_ref == min(ta[-1], tb[-1])
        for name, stamps in (("a", ta), ("b", tb)):
            for k, v in enumerate(obs[name]):
                t_k = t_ref - (1 - k) * 50
                earlier = stamps[stamps <= t_k]
                assert v == (earlier[-1] if len(earlier) else stamps[0])


def test_stale_or_missing_streams_raise():
    w = window()
    with pytest.raises(StaleObservationError, match="'camera': no sample received yet"):
        w.sample(0)
    w.add("camera", 0, 0)
    w.add("joints", 0, 0)
    w.sample(now_ns=40 * MS)
    with pytest.raises(StaleObservationError, match=r"'joints': newest sample is 60.0 ms old, expected <= 50.0 ms"):
        w.sample(now_ns=60 * MS)


def test_short_history_pads_with_the_oldest_sample():
    w = window()
    w.add("camera", 500 * MS, "c0")
    w.add("joints", 500 * MS, "j0")
    obs, _ = w.sample(now_ns=510 * MS)
    assert list(obs["camera"]) == ["c0", "c0", "c0"]


def test_out_of_order_and_unknown_streams_are_rejected():
    w = window()
    w.add("joints", 10 * MS, 1)
    with pytest.raises(ObservationError, match="increasing"):
        w.add("joints", 5 * MS, 2)
    assert w.buffers["joints"].rejected == 1
    with pytest.raises(ObservationError, match="unknown stream 'wrench'"):
        w.add("wrench", 0, 0)
    assert w.ages_ns(20 * MS) == {"camera": None, "joints": 10 * MS}


def test_history_is_bounded_in_time_not_count():
    w = window()
    for t in range(0, 10_000, 2):
        w.add("joints", t * MS, t)
    span = (w.buffers["joints"].stamps[-1] - w.buffers["joints"].stamps[0]) / MS
    assert 300 <= span <= 402  # (n-1)·period + max_age + period = 400 ms, plus one 2 ms sample
