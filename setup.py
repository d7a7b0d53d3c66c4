"""ament_python package; also a plain pip package (pip install -e .)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "diffusion_policy_ros"

# Real rclpy for machines without a ROS installation (unofficial Jazzy wheels).
# On a robot, use the ROS installation's own rclpy and skip this extra.
ROS_EXTRA = [
    "ros-jazzy-rclpy[fastrtps]",
    "ros-jazzy-std-msgs",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-geometry-msgs",
    "ros-jazzy-trajectory-msgs",
    "ros-jazzy-std-srvs",
    "ros-jazzy-nav-msgs",
    "ros-jazzy-diagnostic-msgs",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/urdf", glob("urdf/*")),
    ] + [(f"share/{PACKAGE}/{d}", glob(f"{d}/*")) for d in sorted(glob("checkpoints/*"))],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "torch>=2.1",
        "torchvision>=0.16",
        "diffusers>=0.30",
        "safetensors>=0.4",
        "zarr>=3.0",
        "dacite>=1.8",
        "opencv-python-headless>=4.8",
        "fpsample>=1.0",
        "rosbags>=0.10",
        "pytorch-kinematics>=0.7",
    ],
    extras_require={
        "ros": ROS_EXTRA,
        # RealSense cameras without realsense-ros, and open3d (reference pipeline in tests/benchmarks).
        # open3d-cpu and open3d install the same module; keep whichever you already have.
        "perception": ["pyrealsense2>=2.54", "open3d-cpu>=0.18"],
        # MuJoCo simulator (sim-eval, collect, make demo) and rollout videos. Pinned: the shipped
        # checkpoints and every sim figure were made with 3.14.0, and closed-loop results move with
        # MuJoCo's contacts and dynamics (an earlier press_dp3_force: every seed of a block on 3.14.0, 12/20 on 3.17.0; push_dp3
        # 10/10 vs 9/10). mujoco 4.0's offscreen OSMesa context fails here ("gladLoadGL error").
        "sim": ["mujoco==3.14.0", "imageio>=2.30", "imageio-ffmpeg>=0.5"],
        # The denoiser exported to ONNX (onnx/onnxscript) and run by OpenVINO or ONNX Runtime
        # (inference.backend auto: the default DP3 chunk 97 → 46 ms with OpenVINO, 64 ms with ONNX Runtime).
        "fast": ["openvino>=2024.0", "onnxruntime>=1.20", "onnx>=1.16", "onnxscript>=0.2"],
        # A live view of what the policy sees and does (--rerun, the node's `rerun` parameter).
        "view": ["rerun-sdk>=0.20"],
        # LeRobotDataset v3 in and out (dpros convert --format lerobot; dpros train on a LeRobot folder).
        # The standalone reader/writer: lerobot 0.4.x pins torch<2.11 and lerobot 0.5+ needs Python 3.12.
        # It pins huggingface-hub<0.36, so pip settles diffusers on a release that accepts that (0.39).
        "lerobot": ["lerobot-dataset==0.4.4"],
        "test": ["pytest>=8", "pytest-timeout>=2.3",
                 # The rosidl generators: the PX4 tests build the px4_msgs types the node uses from PX4's
                 # message definitions (test/px4_msgs), as a ROS workspace would (cmake + a C/C++ compiler).
                 *[f"ros-jazzy-{p}" for p in (
                     "rosidl-default-generators", "rosidl-core-generators", "ament-cmake", "ament-cmake-ros",
                     "ament-cmake-gmock", "ament-cmake-gtest", "ament-cmake-pytest", "ament-cmake-python",
                     "ament-cmake-include-directories", "python-cmake-module", "ament-package",
                     "rosidl-typesupport-introspection-c", "rosidl-typesupport-introspection-cpp",
                     "rosidl-typesupport-fastrtps-c", "rosidl-typesupport-fastrtps-cpp")],
                 "catkin_pkg", "empy==3.3.4", "lark"],
    },
    zip_safe=True,
    maintainer="diffusion_policy_ros maintainers",
    description="Diffusion-policy robot controllers on ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "dpros = diffusion_policy_ros.cli:main",
            "realsense_node = diffusion_policy_ros.ros.realsense_node:main",
            "policy_node = diffusion_policy_ros.ros.policy_node:main",
            "sim_node = diffusion_policy_ros.ros.sim_node:main",
            "recorder_node = diffusion_policy_ros.ros.recorder_node:main",
            "teleop_node = diffusion_policy_ros.ros.teleop_node:main",
        ],
    },
)
