"""Teleoperation for demonstrations: sensor_msgs/Joy (gamepad, or a SpaceMouse through spacenav's joy
output) → geometry_msgs/TwistStamped end-effector velocity (MoveIt Servo's input topic by default, or
whatever Cartesian velocity interface drives the arm or the aerial manipulator) and a std_msgs/Float64
gripper command (0 open, 1 closed) when the gripper button toggles.

    ros2 run diffusion_policy_ros teleop_node --ros-args -p deadman_button:=4 -p gripper_button:=0

Mapping, deadman, speed scaling: ``runtime/teleop.py``. No Joy message for ``timeout_s`` while moving
(the device unplugged, the joy driver died) → one zero twist, as on deadman release.

Takeover (DAgger-style corrections while the policy drives): ``takeover_topic`` (std_msgs/Bool) carries
the deadman's state on every Joy message (false once on a timeout); policy_node pauses while it is
true and streams this node's twist (point ``twist_topic`` and ``gripper_topic`` at its
``topics.teleop_twist`` / ``teleop_gripper``), and recorder_node marks the stretch in the episode.
launch/takeover.launch.py wires it up.

Recording from the device: ``start_button``, ``success_button``, ``failure_button`` and
``discard_button`` (-1: unused) call the recorder's ``~/start``, ``~/stop`` (true / false) and
``~/discard`` services (``recorder``: the recorder node's name), so the operator never lets go of the
device to start or end an episode.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Float64

from std_srvs.srv import SetBool, Trigger

from ..errors import ConfigError, DiffusionPolicyRosError
from ..config import field_docs
from ..runtime.teleop import TeleopConfig, TeleopMapper
from ..io import msgs as M
from .entry import run_node

NODE_NAME = "teleop_node"


TOPIC_DOCS = {"joy_topic": "sensor_msgs/Joy input (joy_node, spacenav_node)",
              "twist_topic": "geometry_msgs/TwistStamped output (MoveIt Servo's delta_twist_cmds)",
              "gripper_topic": "std_msgs/Float64 gripper command (0 open, 1 closed)",
              "frame_id": "frame of the twist", "timeout_s": "no joy message this long: zero twist",
              "recorder": "the recorder node whose services the buttons call",
              "takeover_topic": "std_msgs/Bool: the deadman's state, for policy_node's takeover (empty: none)",
              "start_button": "joy button: start an episode (-1: none)",
              "success_button": "joy button: stop the episode as a success (-1: none)",
              "failure_button": "joy button: stop the episode as a failure (-1: none)",
              "discard_button": "joy button: discard the episode (-1: none)"}


def declared_parameters() -> dict[str, object]:
    """Every parameter the node declares, with its default: topics, then the mapping (TeleopConfig)."""
    p = {"joy_topic": "/joy", "twist_topic": "/servo_node/delta_twist_cmds", "gripper_topic": "/gripper/command",
         "frame_id": "base_link", "timeout_s": 0.5, "recorder": "/recorder_node", "takeover_topic": "",
         "start_button": -1,
         "success_button": -1, "failure_button": -1, "discard_button": -1}
    for f in dataclasses.fields(TeleopConfig):
        default = getattr(TeleopConfig(), f.name)
        p[f.name] = list(default) if isinstance(default, tuple) else default
    return p


class TeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        from rcl_interfaces.msg import ParameterDescriptor

        docs = {**field_docs(TeleopConfig()), **TOPIC_DOCS}
        values = {name: self.declare_parameter(name, default, ParameterDescriptor(
            description=docs[name], read_only=True)).value for name, default in declared_parameters().items()}
        mapping = {f.name for f in dataclasses.fields(TeleopConfig)}
        p = {k: v for k, v in values.items() if k not in mapping}
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in mapping}
        self.p, self.mapper = p, TeleopMapper(TeleopConfig(**fields))
        used = {k: v for k, v in {**fields, **p}.items() if k.endswith("_button") and v >= 0}
        for k, v in used.items():
            clash = [o for o, w in used.items() if w == v and o != k]
            if clash:
                self.destroy_node()
                raise ConfigError(f"{k}: button {v} is also {clash[0]}; expected distinct buttons")
        r = p["recorder"].rstrip("/")
        self.record_actions = {  # button → (client, request, what)
            b: (self.create_client(srv, f"{r}/{name}"), req, name) for b, srv, req, name in (
                (p["start_button"], Trigger, Trigger.Request(), "start"),
                (p["success_button"], SetBool, SetBool.Request(data=True), "stop"),
                (p["failure_button"], SetBool, SetBool.Request(data=False), "stop"),
                (p["discard_button"], Trigger, Trigger.Request(), "discard")) if b >= 0}
        self._buttons = np.zeros(0, np.int32)
        if p["takeover_topic"] and self.mapper.cfg.deadman_button < 0:
            self.destroy_node()
            raise ConfigError("takeover_topic: expected a deadman_button >= 0 (the takeover is held on it), got -1")
        self.types = M.RosTypes()
        self.takeover_pub = self.create_publisher(Bool, p["takeover_topic"], 10) if p["takeover_topic"] else None
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
        buttons = np.asarray(msg.buttons, np.int32)
        for b, (client, request, name) in self.record_actions.items():
            if b < len(buttons) and buttons[b] and not (b < len(self._buttons) and self._buttons[b]):
                self._call_recorder(client, request, name)
        self._buttons = buttons
        if self.takeover_pub is not None:
            d = self.mapper.cfg.deadman_button
            self.takeover_pub.publish(Bool(data=bool(d < len(buttons) and buttons[d])))
        if cmd.gripper is not None:
            self.gripper_pub.publish(Float64(data=cmd.gripper))
        if cmd.active:
            self._send(cmd.twist)

    def _call_recorder(self, client, request, name: str) -> None:
        if not client.service_is_ready():
            self.get_logger().error(f"{client.srv_name}: the recorder is not running; button ignored")
            return
        future = client.call_async(request)
        log = self.get_logger()
        future.add_done_callback(lambda f: (log.info if f.result().success else log.warning)(
            f"recorder {name}: {f.result().message}"))

    def _send(self, twist: np.ndarray) -> None:
        self.moving = bool(np.any(twist))
        self.twist_pub.publish(M.encode_twist(self.types, twist, self.get_clock().now().nanoseconds,
                                              self.p["frame_id"]))

    def _watchdog(self) -> None:
        now = self.get_clock().now().nanoseconds
        if self.moving and self.last_joy_ns is not None and now - self.last_joy_ns > self.p["timeout_s"] * 1e9:
            self.get_logger().warning(f"{self.p['joy_topic']}: silent for {self.p['timeout_s']} s; stopping")
            self._send(np.zeros(6))
            if self.takeover_pub is not None:
                self.takeover_pub.publish(Bool(data=False))


def main(args=None) -> None:
    run_node(TeleopNode, NODE_NAME, args)


if __name__ == "__main__":
    main()
