"""Arm deployment: RealSense camera (realsense-ros), the policy node, commands to a joint_trajectory_controller.

    ros2 launch diffusion_policy_ros arm.launch.py checkpoint:=/path/to/checkpoint
    ros2 launch diffusion_policy_ros arm.launch.py checkpoint:=... config:=/path/to/my_arm.yaml launch_camera:=false
    ros2 launch diffusion_policy_ros arm.launch.py checkpoint:=... config:=<share>/config/ur.yaml   # UR driver

Bring up your robot's ros2_control stack (with joint_trajectory_controller and, if you have one,
force_torque_sensor_broadcaster) first: ~/enable is refused while nothing subscribes to the command
topic. Then enable the policy:
    ros2 service call /policy_node/enable std_srvs/srv/SetBool "{data: true}"
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from diffusion_policy_ros.ros.launch_parts import policy_node, realsense_camera


def generate_launch_description():
    args = [
        DeclareLaunchArgument("checkpoint", description="checkpoint folder written by `dpros train`"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare("diffusion_policy_ros"), "config", "arm.yaml"]), description="ROS parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the policy node"),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu | cuda"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="true under `ros2 bag play --clock`"),
        DeclareLaunchArgument("rerun", default_value="", description="live view in Rerun: spawn, or FILE.rrd to save "
                              "one (empty: the parameter file's)"),
        DeclareLaunchArgument("controller", default_value="",
                              description="joint_trajectory_controller name (empty: the parameter file's "
                                          "topics.command; UR: scaled_joint_trajectory_controller)"),
        DeclareLaunchArgument("wrench_topic", default_value="", description="empty: the parameter file's"),
        DeclareLaunchArgument("launch_camera", default_value="true", description="start realsense2_camera"),
        DeclareLaunchArgument("serial_no", default_value="''", description="RealSense serial (several cameras)"),
        DeclareLaunchArgument("color_profile", default_value="640x480x30", description="RealSense colour profile"),
    ]
    return LaunchDescription(args + [realsense_camera("launch_camera"), policy_node("arm")])
