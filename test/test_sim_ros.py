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
        start = node.env.sim.joints()  # JTC ramps from the state measured when the trajectory arrives
        msg = JointTrajectory(joint_names=list(reversed(names)))  # any order, as JTC accepts
        target = q0 + 0.05
        msg.points = [JointTrajectoryPoint(positions=list(reversed(target.tolist())),
                                           time_from_start=Duration(sec=0, nanosec=500_000_000))]
        node._on_trajectory(msg)  # stamp 0: starts now
        assert node.received == 1
        np.testing.assert_allclose(node.env.sim.follower.command(node.env.sim.time_ns + 250_000_000),
                                   (start + target) / 2, atol=1e-4)  # the arm settles by ~1e-5 rad meanwhile
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


def test_aerial_sim_node_flies_to_multidof_targets_sent_over_dds_and_drops_bad_ones(ros_context):
    """The aerial task's sim node, spun as its process spins it: a MultiDOFJointTrajectory published by
    another node moves the end effector (through the flight controller) to the target, seen on the
    config's ee_pose topic; the arm's joints are on joint_states; a malformed command is dropped."""
    import threading

    from geometry_msgs.msg import PoseStamped, Transform
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint

    from rclpy.parameter import Parameter

    from diffusion_policy_ros.ros.sim_node import SimNode

    from .spinning import SpinEach

    sim = SimNode(context=ros_context, parameter_overrides=[Parameter("task", value="reach"),
                                                            Parameter("real_time_factor", value=2.0)])
    peer = Node("peer", context=ros_context)
    t = sim.env.cfg.topics
    got = threading.Condition()
    poses, joints = [], []

    def keep(store):
        def cb(msg):
            with got:
                store.append(msg)
                got.notify_all()
        return cb

    peer.create_subscription(PoseStamped, t.ee_pose, keep(poses), 10)
    peer.create_subscription(JointState, t.joint_states, keep(joints), 10)
    pub = peer.create_publisher(MultiDOFJointTrajectory, t.command, 10)
    spin = SpinEach(ros_context, sim, peer)
    try:
        with got:
            assert got.wait_for(lambda: len(poses) > 2 and joints, 30), "no ee_pose / joint_states from sim_node"
        start = np.array([poses[-1].pose.position.x, poses[-1].pose.position.y, poses[-1].pose.position.z])
        assert poses[-1].header.frame_id == sim.env.cfg.frame_id
        assert list(joints[-1].name) == sim.env.sim.joint_names
        target = start + [0.15, 0.1, 0.05]

        def command(xyz, names=("end_effector",)):
            msg = MultiDOFJointTrajectory(joint_names=list(names))
            for k, frac in enumerate((0.5, 1.0)):
                tf = Transform()
                p = start + frac * (np.asarray(xyz) - start)
                tf.translation.x, tf.translation.y, tf.translation.z = (float(v) for v in p)
                tf.rotation.w = 1.0
                pt = MultiDOFJointTrajectoryPoint(transforms=[tf] * len(names))
                pt.time_from_start.sec = k + 1
                msg.points.append(pt)
            return msg

        while pub.get_subscription_count() == 0:
            with got:
                got.wait(0.05)
        pub.publish(command([np.nan, 0.0, 1.0]))  # NaN target
        pub.publish(command(target, names=("a", "b")))  # two transforms per point
        pub.publish(command(target))

        def reached():
            p = poses[-1].pose.position
            return sim.received == 1 and np.linalg.norm([p.x, p.y, p.z] - target) < 0.02
        with got:
            assert got.wait_for(reached, 60), (sim.received, sim.rejected, poses[-1].pose.position)
        assert sim.rejected == 2 and sim.error is None
    finally:
        spin.shutdown()
        peer.destroy_node()
        sim.destroy_node()


def test_sim_eval_over_ros_runs_the_policy_node_closed_loop(ros_env, tmp_path):
    from diffusion_policy_ros.ros.sim_eval import evaluate_ros

    summary = evaluate_ros("push", str(resolve_shipped_checkpoint("push_dp3")), episodes=2, seed=0,
                           out=tmp_path, videos=1, real_time_factor=0.25, progress=False)
    assert summary["transport"] == "ros" and summary["episodes"] == 2
    assert summary["trajectories_received"] >= 4 and summary["trajectories_rejected"] == 0
    assert summary["successes"] >= 1, summary["per_episode"]
    assert 0 < summary["p50_latency_ms"] <= summary["p99_latency_ms"]
    assert (tmp_path / "results.md").is_file()


def test_sim_eval_over_ros_flies_the_aerial_manipulator_with_guidance(ros_env, tmp_path):
    """The shipped reach_fast checkpoint through the policy node, guided by the aerial manipulator's
    predicted flight (MultiDOFJointTrajectory to the sim node, end-effector pose back)."""
    from diffusion_policy_ros.ros.sim_eval import evaluate_ros

    oracle = evaluate_ros("reach_fast", str(resolve_shipped_checkpoint("reach_fast_dp3")), episodes=1, seed=0,
                          embodiment="oracle", out=tmp_path / "oracle", videos=0, real_time_factor=0.5,
                          progress=False)
    assert oracle["successes"] == 1, oracle["per_episode"]  # the embodiment it was demonstrated with
    guided = evaluate_ros("reach_fast", str(resolve_shipped_checkpoint("reach_fast_dp3")), episodes=1, seed=0,
                          overrides={"guidance.strength": 3.0}, out=tmp_path / "guided", videos=0,
                          real_time_factor=0.25, progress=False)
    assert guided["embodiment"] == "aerial" and guided["trajectories_rejected"] == 0
    # What the node sent reached the flight controller ahead of time, and the target never stepped.
    assert guided["first_point_in_past"] == 0 and guided["max_handover_jump_m"] < 1e-3
    assert guided["trajectories_received"] >= 2
    assert guided["episodes"] == 1 and guided["p50_latency_ms"] > 0
