"""RealSense camera node for users who run the camera without realsense-ros.

Publishes what realsense-ros publishes (relative names; namespace it like realsense-ros, e.g.
``-r __ns:=/camera/camera``):
    color/image_raw                          sensor_msgs/Image rgb8
    color/camera_info                        sensor_msgs/CameraInfo
    aligned_depth_to_color/image_raw         sensor_msgs/Image 16UC1 (millimetres)
    aligned_depth_to_color/camera_info       sensor_msgs/CameraInfo

    ros2 run diffusion_policy_ros realsense_node --ros-args -p width:=640 -p height:=480 -p fps:=30
"""
from __future__ import annotations

import threading

import numpy as np
import rclpy
from rclpy.node import Node
from rcl_interfaces.msg import ParameterDescriptor
from sensor_msgs.msg import CameraInfo, Image

from ..perception.realsense import RealSenseSource
from ..io import msgs as M
from .entry import run_node

TOPICS = {
    "color": "color/image_raw",
    "color_info": "color/camera_info",
    "depth": "aligned_depth_to_color/image_raw",
    "depth_info": "aligned_depth_to_color/camera_info",
}


class RealSenseNode(Node):
    def __init__(self, source: RealSenseSource | None = None, **kwargs):
        super().__init__("realsense_camera", **kwargs)
        d = ParameterDescriptor
        self.declare_parameter("width", 640, d(description="colour and depth width, pixels"))
        self.declare_parameter("height", 480, d(description="colour and depth height, pixels"))
        self.declare_parameter("fps", 30, d(description="frame rate"))
        self.declare_parameter("serial_no", "", d(description="camera serial number; empty = first found"))
        self.declare_parameter("frame_id", "camera_color_optical_frame", d(description="frame of both images"))
        self.declare_parameter("stamp_source", "ros", d(description="'ros' (node clock at receipt) or 'device'"))
        p = {n: self.get_parameter(n).value for n in ("width", "height", "fps", "serial_no", "frame_id", "stamp_source")}
        if p["stamp_source"] not in ("ros", "device"):
            raise ValueError(f"parameter stamp_source: expected 'ros' or 'device', got {p['stamp_source']!r}")
        self.frame_id, self.stamp_source = p["frame_id"], p["stamp_source"]
        self.source = source or RealSenseSource.open_camera(p["width"], p["height"], p["fps"], p["serial_no"] or None,
                                                            frame_id=p["frame_id"])
        self.types = M.RosTypes()
        self.pub = {k: self.create_publisher(CameraInfo if k.endswith("info") else Image, t, 10)
                    for k, t in TOPICS.items()}
        self.published = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="realsense_reader", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set() and rclpy.ok(context=self.context):
            try:
                frame = self.source.read(timeout_ms=1000)
            except RuntimeError as e:  # librealsense timeouts and device errors
                self.errors += 1
                self.get_logger().warning(f"realsense: no frames ({e})", throttle_duration_sec=5.0)
                continue
            self.publish(frame)

    def publish(self, frame) -> None:
        stamp = self.get_clock().now().nanoseconds if self.stamp_source == "ros" else frame.timestamp_ns
        t = self.types
        intr = frame.intrinsics
        info = M.encode_camera_info(t, intr, stamp)
        self.pub["color"].publish(M.numpy_to_image(t, frame.rgb, "rgb8", stamp, self.frame_id))
        self.pub["color_info"].publish(info)
        depth_mm = frame.depth_mm
        if abs(frame.depth_scale - 0.001) > 1e-9:  # 16UC1 on ROS means millimetres
            depth_mm = np.clip(np.round(depth_mm * (frame.depth_scale / 0.001)), 0, 65535).astype(np.uint16)
        self.pub["depth"].publish(M.numpy_to_image(t, depth_mm, "16UC1", stamp, self.frame_id))
        self.pub["depth_info"].publish(info)
        self.published += 1

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.source.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(RealSenseNode, "realsense_camera", args)


if __name__ == "__main__":
    main()
