import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from diffusion_policy_ros.config import ForceConfig
from diffusion_policy_ros.errors import ConfigError, ObservationError
from diffusion_policy_ros.model.encoders import wrench_features
from diffusion_policy_ros.perception.force import WrenchProcessor

DT = 2_000_000  # 500 Hz in ns


def test_gravity_compensation_removes_the_tool_weight_in_any_orientation():
    cfg = ForceConfig(tool_mass=1.2, tool_com=(0.0, 0.0, 0.05), cutoff_hz=0)
    proc = WrenchProcessor(cfg)
    contact = np.array([3.0, -1.0, 5.0, 0.1, 0.2, -0.3])
    for k, rot in enumerate(Rotation.random(50, random_state=0)):
        r = rot.as_matrix()
        f_g = 1.2 * r.T @ np.array([0, 0, -9.81])  # what a perfect sensor reads from the tool alone
        raw = contact + np.concatenate([f_g, np.cross([0, 0, 0.05], f_g)])
        out = proc.add(k * DT + 1, raw, orientation=rot.as_quat())
        assert np.allclose(out, contact, atol=1e-9)
    with pytest.raises(ObservationError, match="orientation"):
        proc.add(10**12, contact)


def test_low_pass_attenuates_noise_and_passes_slow_signal():
    rng = np.random.default_rng(0)
    proc = WrenchProcessor(ForceConfig(cutoff_hz=10.0))
    t = np.arange(2000) * DT
    slow = np.sin(2 * np.pi * 1.0 * t / 1e9)  # 1 Hz
    out = np.array([proc.add(int(ti), [s + rng.normal(0, 1.0), 0, 0, 0, 0, 0]) for ti, s in zip(t, slow)])
    err_in = np.std(rng.normal(0, 1.0, 2000))
    err_out = np.std(out[500:, 0] - np.roll(slow, 3)[500:])  # allow the filter's few-sample delay
    assert err_out < 0.3 * err_in


def test_tare_zeroes_the_output_and_saturation_is_flagged():
    cfg = ForceConfig(cutoff_hz=20.0, tare_samples=100, force_limit=50.0)
    proc = WrenchProcessor(cfg)
    offset = np.array([2.0, -3.0, 10.0, 0.1, 0.0, 0.2])
    for k in range(300):
        proc.add(k * DT + 1, offset)
    assert np.allclose(proc.tare(), offset)
    out = proc.add(300 * DT + 1, offset)
    assert np.allclose(out, 0, atol=1e-9)
    assert not proc.saturated
    proc.add(301 * DT + 1, offset + [60, 0, 0, 0, 0, 0])
    assert proc.saturated and proc.saturation_count == 1


def test_window_interpolates_at_observation_times_without_future_samples():
    proc = WrenchProcessor(ForceConfig(cutoff_hz=0))
    for k in range(100):
        proc.add(k * DT, [k, 0, 0, 0, 0, 2 * k])
    w = proc.window(t_end_ns=50 * DT + DT // 2, n=3, period_ns=10 * DT)
    # Past times interpolate between neighbours; at t_end the next sample lies in the future, so the
    # latest one is held (50, not 50.5): nothing from after t_end leaks in.
    assert np.allclose(w[:, 0], [30.5, 40.5, 50.0]) and np.allclose(w[:, 5], [61, 81, 100])
    with pytest.raises(ObservationError, match="wrench window"):
        proc.window(t_end_ns=5 * DT, n=3, period_ns=10 * DT)  # before the first sample
    with pytest.raises(ObservationError, match="wrench window"):
        proc.window(t_end_ns=500 * DT, n=2, period_ns=DT)  # stale: nothing near t_end


def test_bad_samples_are_rejected():
    proc = WrenchProcessor(ForceConfig())
    proc.add(100, np.zeros(6))
    with pytest.raises(ObservationError, match="6 finite values"):
        proc.add(200, [np.nan, 0, 0, 0, 0, 0])
    with pytest.raises(ObservationError, match="time must increase"):
        proc.add(50, np.zeros(6))
    with pytest.raises(ConfigError, match="force.cutoff_hz"):
        ForceConfig(cutoff_hz=400.0)


def test_magnitude_direction_features():
    w = torch.tensor([[3.0, 0.0, 4.0, 0.0, 0.0, 0.0]])
    f = wrench_features(w)
    assert torch.allclose(f[0, 0], torch.log1p(torch.tensor(5.0)))
    assert torch.allclose(f[0, 1:4], torch.tensor([0.6, 0.0, 0.8]), atol=1e-5)
    assert torch.allclose(f[0, 4:], torch.zeros(4))  # no torque → zero magnitude and direction, no NaN
    assert torch.isfinite(wrench_features(torch.zeros(2, 6))).all()
