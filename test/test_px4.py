"""policy_node's px4 output over real rclpy + Fast DDS, against real px4_msgs types (built here from PX4's
message definitions, test/px4.py). A peer plays PX4 and the vehicle: VehicleStatus, VehicleOdometry (NED),
the end-effector pose (ENU) and a depth camera; it records what the node sends."""
import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from .spinning import interrupt
from .factories import small_intrinsics, small_rgbd

pytest.importorskip("rclpy")

ROOT = Path(__file__).resolve().parents[1]
BASE_ENU = np.array([0.5, -0.2, 1.5])  # where the vehicle hovers


@pytest.fixture(scope="module")
def px4_prefix():
    from . import px4

    try:
        prefix = px4.build_px4_msgs()
    except RuntimeError as e:
        if "needs" in str(e):
            pytest.skip(str(e))
        raise
    for lib in sorted((prefix / "lib").glob("libpx4_msgs__*.so")):  # found by name when types load
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    sys.path.insert(0, str(px4.site_packages(prefix)))
    return prefix


class Vehicle:
    """PX4 + vehicle + sensors, as the node sees them over DDS."""

    def __init__(self, context):
        from geometry_msgs.msg import PoseStamped
        from px4_msgs.msg import OffboardControlMode, TrajectorySetpoint, VehicleOdometry, VehicleStatus
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from trajectory_msgs.msg import JointTrajectory

        from diffusion_policy_ros.embodiment.aerial import AerialManipulator
        from diffusion_policy_ros.io import msgs as M
        from diffusion_policy_ros.ros.policy_node import px4_topic

        self.M, self.types, self.S = M, M.RosTypes(), VehicleStatus
        self.offset = AerialManipulator().offset.numpy()
        self.node = node = Node("fake_px4", context=context)
        best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)  # as PX4's bridge
        self.pub = {"status": node.create_publisher(VehicleStatus, px4_topic("/fmu/out/vehicle_status", VehicleStatus),
                                                    best_effort),
                    "odom": node.create_publisher(VehicleOdometry, "/fmu/out/vehicle_odometry", best_effort),
                    "pose": node.create_publisher(PoseStamped, "/aerial_manipulator/ee_pose", 10),
                    "depth": node.create_publisher(Image, "/camera/camera/aligned_depth_to_color/image_raw", 10),
                    "info": node.create_publisher(CameraInfo, "/camera/camera/aligned_depth_to_color/camera_info", 10)}
        self.types_px4 = (VehicleOdometry,)
        self.nav_state, self.armed = VehicleStatus.NAVIGATION_STATE_POSCTL, True
        self.depth_m, _ = small_rgbd()
        self.got = threading.Condition()
        self.modes: list[float] = []  # receipt times of OffboardControlMode
        self.setpoints: list[tuple[float, np.ndarray]] = []  # (receipt time, NED position)
        self.arm: list = []  # JointTrajectory data
        self.diagnostics: list = []
        node.create_subscription(OffboardControlMode, "/fmu/in/offboard_control_mode", self._on_mode, 10)
        node.create_subscription(TrajectorySetpoint, "/fmu/in/trajectory_setpoint", self._on_setpoint, 10)
        node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", self._on_arm, 10)
        from diagnostic_msgs.msg import DiagnosticArray

        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        node.create_timer(0.1, self._status)
        node.create_timer(0.02, self._state)
        node.create_timer(1 / 30, self._camera)

    def now(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _status(self):
        s = self.S(timestamp=self.now() // 1000, nav_state=self.nav_state,
                   arming_state=self.S.ARMING_STATE_ARMED if self.armed else self.S.ARMING_STATE_DISARMED)
        self.pub["status"].publish(s)

    def _state(self):
        from diffusion_policy_ros.geometry import enu_to_ned

        t = self.now()
        odom = self.types_px4[0](timestamp=t // 1000, pose_frame=1)
        odom.position = enu_to_ned(BASE_ENU).astype(np.float32).tolist()
        odom.q = [1.0, 0.0, 0.0, 0.0]  # w x y z: heading north
        self.pub["odom"].publish(odom)
        ee = BASE_ENU + self.offset
        self.pub["pose"].publish(self.M.encode_pose(self.types, np.r_[ee, 0.0, 0.0, 0.0, 1.0], t, "map"))

    def _camera(self):
        t = self.now()
        self.pub["info"].publish(self.M.encode_camera_info(self.types, small_intrinsics(), t))
        depth_mm = np.round(self.depth_m * 1000).astype(np.uint16)
        self.pub["depth"].publish(self.M.numpy_to_image(self.types, depth_mm, "16UC1", t, "camera"))

    def _on_mode(self, msg):
        with self.got:
            assert msg.position
            self.modes.append(time.monotonic())
            self.got.notify_all()

    def _on_setpoint(self, msg):
        with self.got:
            self.setpoints.append((time.monotonic(), np.asarray(msg.position, float)))
            self.got.notify_all()

    def _on_arm(self, msg):
        with self.got:
            self.arm.append(self.M.decode_joint_trajectory(msg))
            self.got.notify_all()

    def _on_diag(self, msg):
        with self.got:
            self.diagnostics.append({kv.key: kv.value for kv in msg.status[0].values})
            self.got.notify_all()

    def wait(self, predicate, timeout=30.0):
        with self.got:
            assert self.got.wait_for(predicate, timeout), "timed out"

    def rate(self, times: list[float], since: float) -> float:
        recent = [t for t in times if t >= since]
        return len(recent) / max(time.monotonic() - since, 1e-9)


def enable(vehicle, value: bool) -> tuple[bool, str]:
    from std_srvs.srv import SetBool

    client = vehicle.node.create_client(SetBool, "/policy_node/enable")
    assert client.wait_for_service(timeout_sec=60)
    future = client.call_async(SetBool.Request(data=value))
    done = threading.Event()
    future.add_done_callback(lambda f: done.set())
    assert done.wait(10)
    return future.result().success, future.result().message


def test_px4_offboard_heartbeat_vehicle_setpoints_and_pilot_takeover(ros_context, px4_prefix, tmp_path):
    from rclpy.executors import SingleThreadedExecutor

    from diffusion_policy_ros.geometry import enu_to_ned

    from . import px4

    vehicle = Vehicle(ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(vehicle.node)
    threading.Thread(target=executor.spin, daemon=True).start()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(px4.site_packages(px4_prefix)),
                                                        os.environ.get("PYTHONPATH", "")]),
               LD_LIBRARY_PATH=os.pathsep.join([str(px4_prefix / "lib"), os.environ.get("LD_LIBRARY_PATH", "")]))
    log = open(tmp_path / "policy_node.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.ros.policy_node", "--ros-args",
                             "--params-file", str(ROOT / "config" / "aerial.yaml"),
                             "-p", "checkpoint:=reach_fast_dp3", "-p", "output:=px4",
                             "-p", "topics.command:=/fmu/in/trajectory_setpoint",
                             "-p", "timing.camera_latency_s:=0.0", "-p", "timing.action_latency_s:=0.1",
                             "-p", "point_cloud.extrinsic:=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]",
                             "-p", "point_cloud.crop_min:=[-3.0, -3.0, -3.0]", "-p", "sampling.seed:=0"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        hold_ned = enu_to_ned(BASE_ENU)
        # From start-up, disabled: OffboardControlMode above 2 Hz and a setpoint holding the vehicle where
        # odometry puts it, so the pilot can switch to offboard.
        vehicle.wait(lambda: len(vehicle.modes) >= 5 and len(vehicle.setpoints) >= 5, timeout=90)
        t0 = time.monotonic()
        time.sleep(1.0)
        assert vehicle.rate(vehicle.modes, t0) > 10
        assert np.allclose(vehicle.setpoints[-1][1], hold_ned, atol=1e-3)
        ok, message = enable(vehicle, True)  # not in offboard yet: refused
        assert not ok and "offboard" in message
        vehicle.nav_state = vehicle.S.NAVIGATION_STATE_OFFBOARD
        deadline = time.monotonic() + 10  # accepted once the node has seen the next VehicleStatus (10 Hz)
        while not (result := enable(vehicle, True))[0] and time.monotonic() < deadline:
            pass
        assert result[0], result[1]
        # Commanding: the arm gets its own trajectory; the vehicle is sent the base of the base/arm split,
        # not the end-effector target (which sits the arm's rest offset away from it).
        vehicle.wait(lambda: len(vehicle.arm) >= 1)
        arm = vehicle.arm[-1]
        assert arm.joint_names == ["arm_yaw_joint", "arm_shoulder_joint", "arm_elbow_joint"] and np.isfinite(arm.positions).all()
        n = len(vehicle.setpoints)
        vehicle.wait(lambda: len(vehicle.setpoints) >= n + 20)
        ee_ned = enu_to_ned(BASE_ENU + vehicle.offset)
        latest = vehicle.setpoints[-1][1]
        assert np.linalg.norm(latest - hold_ned) < 0.3, latest  # near the vehicle, one chunk in
        assert np.linalg.norm(latest - ee_ned) > np.linalg.norm(vehicle.offset) - 0.3
        # Pilot takeover (position mode): the policy stops, the heartbeat and a hold setpoint go on.
        vehicle.nav_state = vehicle.S.NAVIGATION_STATE_POSCTL
        vehicle.wait(lambda: any("pilot takeover" in d.get("safety_stop", "") for d in vehicle.diagnostics[-2:]),
                     timeout=15)
        assert vehicle.diagnostics[-1]["enabled"] == "False"
        t0 = time.monotonic()
        time.sleep(1.0)
        assert vehicle.rate(vehicle.modes, t0) > 10 and vehicle.rate([t for t, _ in vehicle.setpoints], t0) > 10
        assert np.allclose(vehicle.setpoints[-1][1], hold_ned, atol=1e-3)  # follows the vehicle outside offboard
        assert proc.poll() is None
    finally:
        interrupt(proc)
        log.close()
        executor.shutdown(timeout_sec=5)
        vehicle.node.destroy_node()
    assert "Traceback" not in (tmp_path / "policy_node.log").read_text()  # Ctrl-C is quiet
