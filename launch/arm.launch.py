"""Arm deployment: RealSense camera (realsense-ros), the policy node, commands to a joint_trajectory_controller.

    ros2 launch diffusion_policy_ros arm.launch.py checkpoint:=/path/to/checkpoint
    ros2 launch diffusion_policy_ros arm.launch.py checkpoint:=... config:=/path/to/my_arm.yaml launch_camera:=false

Bring up your robot's ros2_control stack (with joint_trajectory_controller and, if you have one,
force_torque_sensor_broadcaster) first; then enable the policy:
    ros2 service call /policy_node/enable std_srvs/srv/SetBool "{data: true}"
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from diffusion_policy_ros.ros.launch_parts import realsense_camera


def generate_launch_description():
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("checkpoint", description="checkpoint folder written by `dpros train`"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare("diffusion_policy_ros"), "config", "arm.yaml"]), description="ROS parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the policy node"),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu | cuda"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="true under `ros2 bag play --clock`"),
        DeclareLaunchArgument("controller", default_value="joint_trajectory_controller",
                              description="name of the ros2_control joint_trajectory_controller"),
        DeclareLaunchArgument("wrench_topic", default_value="/force_torque_sensor_broadcaster/wrench"),
        DeclareLaunchArgument("launch_camera", default_value="true", description="start realsense2_camera"),
    ]
    camera = realsense_camera("launch_camera")
    policy = Node(
        package="diffusion_policy_ros",
        executable="policy_node",
        name="policy_node",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            arg("config"),
            {
                "checkpoint": arg("checkpoint"),
                "device": arg("device"),
                "use_sim_time": arg("use_sim_time"),
                "topics.command": PathJoinSubstitution(["/", arg("controller"), "joint_trajectory"]),
                "topics.wrench": arg("wrench_topic"),
            },
        ],
    )
    return LaunchDescription(args + [camera, policy])
