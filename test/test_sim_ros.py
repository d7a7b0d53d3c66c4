"""The simulator as a ROS 2 robot, and `sim-eval --ros`: the shipped checkpoint through the policy node
(its own process, use_sim_time) over Fast DDS."""
import os

import numpy as np
import pytest

pytest.importorskip("rclpy")

from diffusion_policy_ros.config import resolve_shipped_checkpoint  # noqa: E402


@pytest.fixture
def ros_env(monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def test_sim_node_follows_trajectories_like_jtc_and_drops_bad_ones(ros_context):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from diffusion_policy_ros.ros.sim_node import SimNode

    node = SimNode(context=ros_context)
    try:
        node.pause(True)
        names = node.env.sim.joint_names
        q0 = node.env.sim.joints()
        start = node.env.sim.follower.command(node.env.sim.time_ns)  # JTC starts from its current command
        msg = JointTrajectory(joint_names=list(reversed(names)))  # any order, as JTC accepts
        target = q0 + 0.05
        msg.points = [JointTrajectoryPoint(positions=list(reversed(target.tolist())),
                                           time_from_start=Duration(sec=0, nanosec=500_000_000))]
        node._on_trajectory(msg)  # stamp 0: starts now
        assert node.received == 1
        np.testing.assert_allclose(node.env.sim.follower.command(node.env.sim.time_ns + 250_000_000),
                                   (start + target) / 2, atol=1e-9)
        bad = JointTrajectory(joint_names=["elbow", "wrist"])
        bad.points = [JointTrajectoryPoint(positions=[0.0, 0.0])]
        node._on_trajectory(bad)
        nan = JointTrajectory(joint_names=list(names))
        nan.points = [JointTrajectoryPoint(positions=[float("nan")] * len(names))]
        node._on_trajectory(nan)
        assert node.rejected == 2 and node.received == 1
        # Episodes keep sim time monotonic (stamps never go back for the policy node).
        before = node.now_ns()
        node.episode_start(5)
        assert node.now_ns() > before and node.seed == 5
    finally:
        node.destroy_node()


def test_sim_eval_over_ros_runs_the_policy_node_closed_loop(ros_env, tmp_path):
    from diffusion_policy_ros.ros.sim_eval import evaluate_ros

    summary = evaluate_ros("push", str(resolve_shipped_checkpoint("push_dp3")), episodes=2, seed=0,
                           out=tmp_path, videos=1, real_time_factor=0.25, progress=False)
    assert summary["transport"] == "ros" and summary["episodes"] == 2
    assert summary["trajectories_received"] >= 4 and summary["trajectories_rejected"] == 0
    assert summary["successes"] >= 1, summary["per_episode"]
    assert 0 < summary["p50_latency_ms"] <= summary["p99_latency_ms"]
    assert (tmp_path / "results.md").is_file()
