"""Which topics feed a runtime, and how each message reaches it: one table for every driver.

The live node subscribes to these topics, bag replay and dataset conversion read them from a bag;
all three decode with ``ros/msgs.py`` and call the same ``PolicyRuntime.add_*``. No rclpy here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import TopicsConfig
from . import msgs as M


@dataclass(frozen=True)
class Input:
    name: str  # color | depth | camera_info | wrench | joint_states | ee_pose (logs, counters)
    topic: str
    msgtype: str  # ROS 2 type name, e.g. sensor_msgs/msg/Image
    feed: Callable  # (runtime, msg) -> None; raises MessageError / ObservationError on bad data


def _color(rt, msg):
    rt.add_color(M.header_ns(msg), M.decode_rgb(msg))


def _color_compressed(rt, msg):
    img, kind = M.decode_compressed(msg)
    if kind != "rgb":
        raise M.MessageError(f"compressed colour: expected jpeg/png colour, got format {msg.format!r}")
    rt.add_color(M.header_ns(msg), img)


def _depth(rt, msg):
    rt.add_depth(M.header_ns(msg), M.decode_depth(msg))


def _depth_compressed(rt, msg):
    depth, kind = M.decode_compressed(msg)
    if kind != "depth":
        raise M.MessageError(f"compressed depth: expected compressedDepth, got format {msg.format!r}")
    rt.add_depth(M.header_ns(msg), depth)


def _camera_info(rt, msg):
    rt.set_camera(M.decode_camera_info(msg))


def _wrench(rt, msg):
    rt.add_wrench(M.header_ns(msg), M.decode_wrench(msg), msg.header.frame_id)


def _joints(rt, msg):
    q, _, _ = M.decode_joint_state(msg, rt.joint_state_names)
    rt.add_joints(M.header_ns(msg), q)


def _ee_pose(rt, msg):
    rt.add_ee_pose(M.header_ns(msg), M.decode_pose(msg))


IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"


def runtime_inputs(runtime, topics: TopicsConfig, watch_wrench: bool = False) -> list[Input]:
    """The inputs ``runtime`` uses (its observation streams), with topic names from ``topics``.
    ``watch_wrench``: the wrench topic too when the policy does not read force (a live node checks
    the force limits on it)."""
    t, streams, out = topics, runtime.window.buffers, []
    if "color" in streams:
        out.append(Input("color", t.color + "/compressed", COMPRESSED, _color_compressed) if t.compressed_color
                   else Input("color", t.color, IMAGE, _color))
    if "depth" in streams:
        out.append(Input("depth", t.depth + "/compressedDepth", COMPRESSED, _depth_compressed)
                   if t.compressed_depth else Input("depth", t.depth, IMAGE, _depth))
        out.append(Input("camera_info", t.camera_info, "sensor_msgs/msg/CameraInfo", _camera_info))
    if "wrench" in streams or (watch_wrench and t.wrench):
        out.append(Input("wrench", t.wrench, "geometry_msgs/msg/WrenchStamped", _wrench))
    if "joints" in streams:
        out.append(Input("joint_states", t.joint_states, "sensor_msgs/msg/JointState", _joints))
    if "ee_pose" in streams:
        out.append(Input("ee_pose", t.ee_pose, "geometry_msgs/msg/PoseStamped", _ee_pose))
    return out


# The stream each input fills (the node triggers cycles on the camera or state stream).
STREAM_OF = {"joint_states": "joints"}
