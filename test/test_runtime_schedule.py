"""Action scheduling (timing, latency, hand-over) and safety limits, on many random cases."""
import numpy as np
import pytest

from diffusion_policy_ros.runtime.safety import Limits, UnsafeCommandError, clamp_to_box, enforce_limits
from diffusion_policy_ros.runtime.schedule import ActionScheduler, TimedTrajectory

MS = 1_000_000
DT = 100 * MS


def test_waypoints_are_stamped_from_the_publish_time_and_late_ones_dropped():
    s = ActionScheduler(DT, action_latency_ns=30 * MS, blend_steps=0)
    s.current = TimedTrajectory(np.array([500, 9000]) * MS, np.zeros((2, 1)))  # moving at the observation
    chunk = np.arange(8.0)[:, None]
    traj = s.schedule(chunk, t_obs_ns=1000 * MS, publish_ns=1150 * MS)
    # due at 1000, 1100, ..., 1700 ms; those not after publish + latency + lead = 1190 ms are gone (the
    # hand-over point from the running trajectory comes first)
    assert list(traj.times_ns // MS) == [1190, 1200, 1300, 1400, 1500, 1600, 1700]
    assert list(traj.values[1:, 0]) == [2, 3, 4, 5, 6, 7]
    # All late: nothing is sent (the running trajectory goes on), never a jump to the last action.
    assert s.schedule(chunk, t_obs_ns=0, publish_ns=5000 * MS) is None


def test_a_robot_at_rest_since_its_observation_starts_the_chunk_at_the_hand_over():
    """Nothing commanded after the observation (the first chunk, or the last trajectory ended before
    it): the robot is where it was observed, so the chunk starts from its first step when it lands,
    instead of dropping the steps planned for the latency and jumping to a later waypoint."""
    s = ActionScheduler(DT, action_latency_ns=50 * MS, offset_steps=1)
    chunk = np.arange(8.0)[:, None]
    for current in (None, TimedTrajectory(np.array([0, 900]) * MS, np.zeros((2, 1)))):
        s.current = current
        assert s.anchor_ns(1000 * MS, 1400 * MS) == 1450 * MS
        traj = s.schedule(chunk, t_obs_ns=1000 * MS, publish_ns=1400 * MS)
        assert list(traj.times_ns // MS) == [1550 + 100 * i for i in range(8)]
        assert list(traj.values[:, 0]) == list(range(8))
    # still moving at the observation: stamped from it, the latency's steps dropped
    s.current = TimedTrajectory(np.array([0, 1100]) * MS, np.zeros((2, 1)))
    assert s.anchor_ns(1000 * MS, 1400 * MS) == 1000 * MS
    traj = s.schedule(chunk, t_obs_ns=1000 * MS, publish_ns=1400 * MS)
    assert traj.times_ns[0] // MS == 1500 and traj.values[0, 0] == 4


def test_ensembling_averages_where_the_running_trajectory_planned_and_follows_the_new_chunk_beyond():
    """timing.ensemble < 1: a waypoint the running trajectory also planned is the weighted mean of the
    two predictions; past the running trajectory's end the new chunk alone (after the blend)."""
    s = ActionScheduler(DT, action_latency_ns=0, blend_steps=0, ensemble=0.25)
    s.current = TimedTrajectory(np.array([0, 1000]) * MS, np.zeros((2, 1)))  # holds 0 until 1000 ms
    traj = s.schedule(np.full((16, 1), 4.0), t_obs_ns=0, publish_ns=250 * MS)
    t = traj.times_ns // MS
    assert np.allclose(traj.values[(t > 260) & (t <= 1000), 0], 1.0)  # 0.25·4 + 0.75·0
    assert np.allclose(traj.values[t > 1000, 0], 4.0)
    assert traj.values[0, 0] == 0.0  # the hand-over point: the running command, no jump
    with pytest.raises(Exception, match="ensemble"):
        ActionScheduler(DT, ensemble=0.0)


def test_offset_shifts_every_waypoint():
    traj = ActionScheduler(DT, offset_steps=1).schedule(np.zeros((4, 2)), t_obs_ns=0, publish_ns=0)
    assert list(traj.times_ns // MS) == [100, 200, 300, 400]


def test_hand_over_is_continuous_and_in_the_future_for_random_chunks():
    rng = np.random.default_rng(0)
    for trial in range(300):
        s = ActionScheduler(DT, action_latency_ns=int(rng.integers(0, 50)) * MS, blend_steps=int(rng.integers(0, 4)))
        first = np.cumsum(rng.normal(0, 0.1, (8, 6)), axis=0)
        t0 = int(rng.integers(0, 10**6)) * MS
        s.current = old = s.schedule(first, t_obs_ns=t0, publish_ns=t0 + 20 * MS).with_velocities()
        publish = t0 + int(rng.integers(300, 500)) * MS  # the next chunk arrives mid-trajectory
        second = first[-1] + rng.normal(0, 1.0, (8, 6))  # far from the old plan on purpose
        new = s.schedule(second, t_obs_ns=publish - int(rng.integers(0, 400)) * MS, publish_ns=publish)
        start = new.times_ns[0]
        assert start == publish + s.latency + s.lead > publish + s.latency  # first point in the future
        assert np.allclose(new.values[0], old.at(start))  # no jump where the new trajectory begins
        assert np.all(np.diff(new.times_ns) > 0)
        if s.blend == 0:
            assert np.allclose(new.values[1:], second[-(len(new.times_ns) - 1):])


def test_velocities_are_consistent_with_positions_and_zero_at_the_end():
    rng = np.random.default_rng(2)
    times = np.cumsum(rng.integers(50, 150, 9)) * MS
    traj = TimedTrajectory(times, np.cumsum(rng.normal(0, 0.1, (9, 3)), axis=0)).with_velocities()
    assert np.allclose(traj.velocities[-1], 0)
    t = times / 1e9
    central = (traj.values[2:] - traj.values[:-2]) / (t[2:] - t[:-2])[:, None]
    assert np.allclose(traj.velocities[1:-1], central)
    # Cubic segments pass through every waypoint with the given velocity (JTC's spline).
    q, v = traj.sample(times)
    assert np.allclose(q, traj.values) and np.allclose(v[1:-1], traj.velocities[1:-1])
    mid = (times[3] + times[4]) // 2
    eps = 1000
    numeric = (traj.at(mid + eps) - traj.at(mid - eps)) / (2 * eps / 1e9)
    assert np.allclose(traj.sample(mid)[1], numeric, atol=1e-6)


def test_limits_hold_on_random_trajectories():
    rng = np.random.default_rng(1)
    lim = Limits(lower=-np.ones(6), upper=np.ones(6), max_velocity=np.full(6, 2.0))
    for trial in range(300):
        times = np.cumsum(rng.integers(5, 120, 10)) * MS
        traj = TimedTrajectory(times, rng.normal(0, 2.0, (10, 6)))
        current = rng.uniform(-1, 1, 6)
        out, report = enforce_limits(traj, current, now_ns=0, limits=lim)
        assert np.all(out.values >= -1) and np.all(out.values <= 1)
        q = np.vstack([current, out.values])
        t = np.concatenate([[0], times]) / 1e9
        vel = np.abs(np.diff(q, axis=0)) / np.diff(t)[:, None]
        assert np.all(vel <= 2.0 + 1e-9)
        assert report.position_clamped > 0  # N(0, 2) samples often leave [-1, 1]


def test_within_limits_is_unchanged_and_nan_is_never_sent():
    lim = Limits(lower=[-1.0, -1.0], upper=[1.0, 1.0], max_velocity=[1.0, 1.0])
    traj = TimedTrajectory(np.array([100, 200]) * MS, np.array([[0.05, 0.0], [0.1, 0.05]]))
    out, report = enforce_limits(traj, np.zeros(2), 0, lim)
    assert np.array_equal(out.values, traj.values) and report.position_clamped == report.velocity_limited == 0
    bad = TimedTrajectory(traj.times_ns, np.array([[np.nan, 0.0], [0.1, 0.05]]))
    with pytest.raises(UnsafeCommandError, match="NaN"):
        enforce_limits(bad, np.zeros(2), 0, lim)
    with pytest.raises(UnsafeCommandError, match="2 values per waypoint"):
        enforce_limits(TimedTrajectory(traj.times_ns, np.zeros((2, 3))), np.zeros(2), 0, lim)
    with pytest.raises(UnsafeCommandError, match="lower < upper"):
        Limits(lower=[1.0], upper=[0.0], max_velocity=[1.0])
    boxed, moved = clamp_to_box(np.array([[0.0, 0.0, 2.0]]), [-1, -1, 0], [1, 1, 1])
    assert moved == 1 and boxed[0, 2] == 1.0


def test_cartesian_limits_hold_on_random_end_effector_trajectories():
    import torch
    from scipy.spatial.transform import Rotation

    from diffusion_policy_ros.geometry import rot6d_to_matrix
    from diffusion_policy_ros.runtime.safety import CartesianLimits, enforce_cartesian_limits

    def pose9(p, r):
        return np.concatenate((p, r.as_matrix()[:2, :].reshape(6)))

    rng = np.random.default_rng(3)
    lim = CartesianLimits(max_linear_velocity=0.5, max_angular_velocity=1.0, max_linear_acceleration=2.0,
                          max_angular_acceleration=4.0)
    for trial in range(100):
        times = np.cumsum(rng.integers(20, 120, 8)) * MS
        rots = Rotation.random(9, random_state=trial)
        current = pose9(rng.normal(0, 0.2, 3), rots[0])
        values = np.stack([np.concatenate((pose9(rng.normal(0, 0.5, 3), rots[k + 1]), [rng.uniform()]))
                           for k in range(8)])
        out, report = enforce_cartesian_limits(TimedTrajectory(times, values), current, 0, lim)
        assert report.velocity_limited > 0 and np.array_equal(out.values[:, 9], values[:, 9])  # gripper untouched
        t = np.concatenate(([0], times)) / 1e9
        dt = np.diff(t)
        p = np.vstack((current[:3], out.values[:, :3]))
        v = np.diff(p, axis=0) / dt[:, None]
        assert (np.linalg.norm(v, axis=1) <= 0.5 + 1e-9).all()
        dv = np.diff(np.vstack((np.zeros(3), v)), axis=0)
        assert (np.linalg.norm(dv, axis=1) <= 2.0 * dt + 1e-9).all()
        mats = rot6d_to_matrix(torch.as_tensor(np.vstack((current[None, 3:9], out.values[:, 3:9])))).numpy()
        assert np.allclose(np.einsum("kij,kil->kjl", mats, mats), np.eye(3), atol=1e-9)  # still rotations
        w = np.array([(Rotation.from_matrix(a).inv() * Rotation.from_matrix(b)).magnitude()
                      for a, b in zip(mats[:-1], mats[1:])]) / dt
        assert (w <= 1.0 + 1e-6).all()
    # Within the limits nothing changes.
    slow = TimedTrajectory(np.array([100, 200]) * MS, np.stack([pose9([0.01 * k, 0, 0], rots[0]) for k in (1, 2)]))
    out, report = enforce_cartesian_limits(slow, pose9([0, 0, 0], rots[0]), 0, lim)
    assert report.velocity_limited == 0 and np.allclose(out.values, slow.values)
