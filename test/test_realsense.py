"""RealSense input without hardware: frames injected through librealsense's software device."""
import threading

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2")

from diffusion_policy_ros.perception.pointcloud import CameraModel  # noqa: E402
from diffusion_policy_ros.perception.realsense import SoftwareCamera  # noqa: E402
from diffusion_policy_ros.perception.synthetic import tabletop_depth  # noqa: E402

CAM = CameraModel(160, 120, 150.0, 150.0, 80.0, 60.0)


def scene():
    depth, rgb = tabletop_depth(CAM, (0, -0.3, -1.0), -0.9)
    return np.round(depth * 1000).astype(np.uint16), rgb


def make_camera():
    return SoftwareCamera(CAM.width, CAM.height, CAM.fx, CAM.fy, CAM.cx, CAM.cy)


def test_source_returns_aligned_depth_colour_and_intrinsics():
    depth_mm, rgb = scene()
    cam = make_camera()
    with cam.source() as source:
        for _ in range(2):  # the syncer releases a pair once the next one arrives
            cam.push(depth_mm, rgb)
        frame = source.read()
    assert frame.rgb.shape == (120, 160, 3) and np.array_equal(frame.rgb, rgb)
    assert frame.depth_mm.dtype == np.uint16 and frame.depth_scale == pytest.approx(0.001)
    # identity extrinsics + shared intrinsics: alignment keeps depth in place, except at occlusion edges
    same = np.abs(frame.depth_mm.astype(int) - depth_mm) <= 1
    assert same.mean() > 0.9
    intr = frame.intrinsics
    assert (intr.width, intr.height, intr.fx, intr.cx) == (160, 120, 150.0, 80.0)
    assert frame.timestamp_ns > 0


def test_software_camera_rejects_wrong_frames():
    from diffusion_policy_ros.errors import ObservationError

    cam = make_camera()
    with pytest.raises(ObservationError, match="depth_mm"):
        cam.push(np.zeros((10, 10), np.uint16), np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(ObservationError, match="rgb"):
        cam.push(np.zeros((120, 160), np.uint16), np.zeros((120, 160), np.uint8))
    cam.close()


def test_node_publishes_realsense_ros_topics_over_dds(ros_context):
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image

    from diffusion_policy_ros.io import msgs as M
    from diffusion_policy_ros.ros.realsense_node import TOPICS, RealSenseNode

    depth_mm, rgb = scene()
    cam = make_camera()
    node = RealSenseNode(source=cam.source(), context=ros_context, namespace="/camera/camera")
    listener = Node("listener", context=ros_context)
    got = {k: [] for k in TOPICS}
    done = threading.Event()

    def callback(key):
        def cb(msg):
            got[key].append(msg)
            if all(len(v) >= 3 for v in got.values()):
                done.set()
        return cb

    for key, topic in TOPICS.items():
        listener.create_subscription(CameraInfo if key.endswith("info") else Image, f"/camera/camera/{topic}",
                                     callback(key), 10)
    executor = MultiThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        for _ in range(300):  # push frames at up to ~50 Hz until every topic has 3 messages
            cam.push(depth_mm, rgb)
            if done.wait(0.02):
                break
        assert done.is_set(), {k: len(v) for k, v in got.items()}
    finally:
        executor.shutdown(timeout_sec=5.0)
        spin.join(timeout=5.0)
        node.destroy_node()
        listener.destroy_node()
    color, depth = got["color"][-1], got["depth"][-1]
    assert color.encoding == "rgb8" and depth.encoding == "16UC1"
    assert color.header.frame_id == depth.header.frame_id == "camera_color_optical_frame"
    assert np.array_equal(M.decode_rgb(color), rgb)
    assert (np.abs(M.image_to_numpy(depth).astype(int) - depth_mm) <= 1).mean() > 0.9
    info = M.decode_camera_info(got["depth_info"][-1])
    assert (info.width, info.height, info.fx, info.cy) == (160, 120, 150.0, 60.0)
    assert M.header_ns(color) == M.header_ns(got["color_info"][-1])
