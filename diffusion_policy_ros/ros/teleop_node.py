"""Teleoperation for demonstrations: sensor_msgs/Joy (gamepad, or a SpaceMouse through spacenav's joy
output) → geometry_msgs/TwistStamped end-effector velocity (MoveIt Servo's input topic by default, or
whatever Cartesian velocity interface drives the arm or the aerial manipulator) and a std_msgs/Float64
gripper command (0 open, 1 closed) when the gripper button toggles.

    ros2 run diffusion_policy_ros teleop_node --ros-args -p deadman_button:=4 -p gripper_button:=0

Mapping, deadman, speed scaling: ``runtime/teleop.py``. No Joy message for ``timeout_s`` while moving
(the device unplugged, the joy driver died) → one zero twist, as on deadman release.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64

from ..errors import DiffusionPolicyRosError
from ..runtime.teleop import TeleopConfig, TeleopMapper
from . import msgs as M
from .entry import run_node

NODE_NAME = "teleop_node"


class TeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("joy_topic", "/joy"), ("twist_topic", "/servo_node/delta_twist_cmds"),
            ("gripper_topic", "/gripper/command"), ("frame_id", "base_link"), ("timeout_s", 0.5))}
        fields = {}
        for f in dataclasses.fields(TeleopConfig):
            default = getattr(TeleopConfig(), f.name)
            value = self.declare_parameter(f.name, list(default) if isinstance(default, tuple) else default).value
            fields[f.name] = tuple(value) if isinstance(default, tuple) else value
        self.p, self.mapper = p, TeleopMapper(TeleopConfig(**fields))
        self.types = M.RosTypes()
        self.twist_pub = self.create_publisher(TwistStamped, p["twist_topic"], 10)
        self.gripper_pub = self.create_publisher(Float64, p["gripper_topic"], 10)
        self.create_subscription(Joy, p["joy_topic"], self._on_joy, 10)
        self.create_timer(0.1, self._watchdog)
        self.last_joy_ns = None
        self.moving = False
        self.get_logger().info(f"teleop: {p['joy_topic']} → {p['twist_topic']} ({p['frame_id']}), "
                               f"gripper → {p['gripper_topic']}")

    def _on_joy(self, msg) -> None:
        try:
            axes, buttons = M.decode_joy(msg)
            cmd = self.mapper.update(axes, buttons)
        except (DiffusionPolicyRosError, ValueError) as e:
            self.get_logger().warning(f"{self.p['joy_topic']}: {e}; message dropped", throttle_duration_sec=2.0)
            return
        self.last_joy_ns = self.get_clock().now().nanoseconds
        if cmd.gripper is not None:
            self.gripper_pub.publish(Float64(data=cmd.gripper))
        if cmd.active:
            self._send(cmd.twist)

    def _send(self, twist: np.ndarray) -> None:
        self.moving = bool(np.any(twist))
        self.twist_pub.publish(M.encode_twist(self.types, twist, self.get_clock().now().nanoseconds,
                                              self.p["frame_id"]))

    def _watchdog(self) -> None:
        now = self.get_clock().now().nanoseconds
        if self.moving and self.last_joy_ns is not None and now - self.last_joy_ns > self.p["timeout_s"] * 1e9:
            self.get_logger().warning(f"{self.p['joy_topic']}: silent for {self.p['timeout_s']} s; stopping")
            self._send(np.zeros(6))


def main(args=None) -> None:
    run_node(TeleopNode, NODE_NAME, args)


if __name__ == "__main__":
    main()
