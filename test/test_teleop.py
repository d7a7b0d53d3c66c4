"""Joystick teleoperation: the pure mapping, and the node over real rclpy + Fast DDS."""
import threading
import time

import numpy as np
import pytest

from diffusion_policy_ros.errors import ConfigError
from diffusion_policy_ros.runtime.teleop import TeleopConfig, TeleopMapper

from .spinning import SpinEach


def test_deadman_scaling_deadzone_and_gripper_toggle():
    m = TeleopMapper(TeleopConfig(deadman_button=2, gripper_button=0, speed_up_button=1, deadzone=0.1,
                                  axis_signs=(1, -1, 1, 1, 1, 1)))
    axes = [1.0, 0.5, 0.05, 0.0, 0.0, -1.0]
    released = m.update(axes, [0, 0, 0])
    assert not released.active and not released.twist.any()
    held = m.update(axes, [0, 0, 1])
    np.testing.assert_allclose(held.twist, [0.1, -0.05, 0.0, 0, 0, -0.5])  # z inside the dead zone
    faster = m.update(axes, [0, 1, 1])
    np.testing.assert_allclose(faster.twist, held.twist * 1.25)
    assert m.update(axes, [0, 1, 1]).twist[0] == pytest.approx(0.125)  # held button: no second step
    stop = m.update(axes, [0, 0, 0])
    assert stop.active and not stop.twist.any()  # one zero command on release ...
    assert not m.update(axes, [0, 0, 0]).active  # ... then silence
    assert m.update(axes, [1, 0, 0]).gripper == 1.0 and m.update(axes, [1, 0, 0]).gripper is None
    assert m.update(axes, [0, 0, 0]).gripper is None and m.update(axes, [1, 0, 0]).gripper == 0.0
    with pytest.raises(ConfigError, match="joy.axes"):
        m.update([0.0, 0.0], [0, 0, 0])
    with pytest.raises(ConfigError, match="axis_signs"):
        TeleopConfig(axis_signs=(1, 1))


def test_node_turns_joy_into_twist_and_stops_when_the_joystick_goes_silent(ros_context):
    from geometry_msgs.msg import TwistStamped
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Joy
    from std_msgs.msg import Float64

    from diffusion_policy_ros.io import msgs as M
    from diffusion_policy_ros.ros.teleop_node import TeleopNode

    teleop = TeleopNode(context=ros_context, parameter_overrides=[
        Parameter("deadman_button", value=1), Parameter("gripper_button", value=0),
        Parameter("twist_topic", value="/arm/twist"), Parameter("timeout_s", value=0.3)])
    peer = Node("joy_peer", context=ros_context)
    joy = peer.create_publisher(Joy, "/joy", 10)
    twists, grips, got = [], [], threading.Condition()

    def on(store):
        def cb(msg):
            with got:
                store.append(msg)
                got.notify_all()
        return cb
    peer.create_subscription(TwistStamped, "/arm/twist", on(twists), 10)
    peer.create_subscription(Float64, "/gripper/command", on(grips), 10)
    ex = SpinEach(ros_context, teleop, peer)
    T = M.RosTypes()
    try:
        end = time.monotonic() + 20
        while joy.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        joy.publish(M.encode_joy(T, [0.5, 0, 0, 0, 0, 0], [1, 1], 0))  # deadman + gripper press
        with got:
            assert got.wait_for(lambda: twists and grips, timeout=10)
        assert M.decode_twist(twists[0])[0] == pytest.approx(0.05) and twists[0].header.frame_id == "base_link"
        assert grips[0].data == 1.0
        with got:  # no more Joy: the watchdog sends a zero twist
            assert got.wait_for(lambda: len(twists) >= 2, timeout=10)
        assert not M.decode_twist(twists[-1]).any()
    finally:
        ex.shutdown()
        teleop.destroy_node()
        peer.destroy_node()


def test_gamepad_buttons_start_and_stop_episodes_on_the_real_recorder(ros_context, tmp_path):
    import json

    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Joy

    from diffusion_policy_ros.io import msgs as M
    from diffusion_policy_ros.io.bags import BagReader
    from diffusion_policy_ros.ros.recorder_node import RecorderNode
    from diffusion_policy_ros.ros.teleop_node import TeleopNode

    with pytest.raises(ConfigError, match="deadman_button: button 1 is also start_button"):
        TeleopNode(context=ros_context, parameter_overrides=[Parameter("deadman_button", value=1),
                                                             Parameter("start_button", value=1)])
    teleop = TeleopNode(context=ros_context, parameter_overrides=[
        Parameter("deadman_button", value=1), Parameter("gripper_button", value=-1),
        Parameter("start_button", value=2), Parameter("success_button", value=3),
        Parameter("twist_topic", value="/arm/twist")])
    rec = RecorderNode(context=ros_context, parameter_overrides=[
        Parameter("output_dir", value=str(tmp_path)), Parameter("topics", value=["/arm/twist"]),
        Parameter("keys", value=False), Parameter("stop_drain_s", value=0.5)])
    peer = Node("joy_peer", context=ros_context)
    joy = peer.create_publisher(Joy, "/joy", 10)
    ex = SpinEach(ros_context, teleop, peer, rec)
    T = M.RosTypes()

    def until(cond, timeout=20.0):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            time.sleep(0.05)
        return cond()

    def press(buttons, n=3):
        for _ in range(n):
            joy.publish(M.encode_joy(T, [0.5, 0, 0, 0, 0, 0], buttons, 0))
            time.sleep(0.05)

    try:
        assert until(lambda: joy.get_subscription_count() > 0 and rec.types.get("/arm/twist") is not None
                     and all(c.service_is_ready() for c, _, _ in teleop.record_actions.values()))
        press([0, 0, 1, 0])  # start
        assert until(lambda: rec.current is not None)
        press([0, 1, 0, 0], n=20)  # deadman held: twists flow and are recorded
        press([0, 1, 0, 1])  # success
        assert until(lambda: (tmp_path / "episode_0000" / "episode.json").exists())
        assert rec.current is None
        assert json.loads((tmp_path / "episode_0000" / "episode.json").read_text())["success"] is True
        with BagReader(tmp_path / "episode_0000") as bag:
            assert bag.count("/arm/twist") >= 10
    finally:
        ex.shutdown()
        for n in (teleop, rec, peer):
            n.destroy_node()


def test_recorder_and_teleop_describe_every_parameter(ros_context, tmp_path):
    from rclpy.parameter import Parameter

    from diffusion_policy_ros.ros import recorder_node, teleop_node

    nodes = [recorder_node.RecorderNode(context=ros_context, parameter_overrides=[
                 Parameter("output_dir", value=str(tmp_path)), Parameter("keys", value=False)]),
             teleop_node.TeleopNode(context=ros_context)]
    try:
        for node, module in zip(nodes, (recorder_node, teleop_node)):
            names = list(module.declared_parameters())
            descs = node.describe_parameters(names)
            assert [d.name for d in descs if not d.description.strip()] == [] and all(d.read_only for d in descs)
    finally:
        for node in nodes:
            node.destroy_node()
