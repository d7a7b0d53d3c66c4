"""Aerial manipulator deployment: RealSense camera, the policy node, end-effector targets for the vehicle.

    ros2 launch diffusion_policy_ros aerial.launch.py checkpoint:=/path/to/checkpoint
    ros2 launch diffusion_policy_ros aerial.launch.py checkpoint:=... output:=px4   # needs px4_msgs

output:=multidof publishes trajectory_msgs/MultiDOFJointTrajectory on /aerial_manipulator/ee_trajectory;
output:=pose streams geometry_msgs/PoseStamped on /aerial_manipulator/ee_pose_target;
output:=px4 streams px4_msgs/TrajectorySetpoint (NED) on /fmu/in/trajectory_setpoint with
OffboardControlMode beside it (run the micro XRCE-DDS agent; switch to offboard from the RC/QGC).
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
            [FindPackageShare("diffusion_policy_ros"), "config", "aerial.yaml"]), description="ROS parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the policy node"),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu | cuda"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("rerun", default_value="", description="live view in Rerun: spawn, or FILE.rrd to save "
                              "one (empty: the parameter file's)"),
        DeclareLaunchArgument("output", default_value="multidof", description="multidof | pose | px4"),
        DeclareLaunchArgument("launch_camera", default_value="true"),
        DeclareLaunchArgument("serial_no", default_value="''", description="RealSense serial (several cameras)"),
        DeclareLaunchArgument("color_profile", default_value="640x480x30", description="RealSense colour profile"),
    ]
    return LaunchDescription(args + [realsense_camera("launch_camera"), policy_node("aerial")])
