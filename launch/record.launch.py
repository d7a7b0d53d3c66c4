"""Demonstration recording: a gamepad (joy_node) → teleop_node → the arm's Cartesian velocity input
(MoveIt Servo by default), the RealSense camera, and recorder_node writing one rosbag2 per episode.

    ros2 launch diffusion_policy_ros record.launch.py output_dir:=~/demos/wipe task:=wipe
    ros2 launch diffusion_policy_ros record.launch.py launch_camera:=false launch_joy:=false config:=my_record.yaml

Bring up the robot (ros2_control, MoveIt Servo or another twist interface, the F/T broadcaster)
first. The gamepad's Start / Y / X / Back buttons start, stop as success, stop as failure and
discard an episode (config/record.yaml); the services work too:
    ros2 service call /recorder_node/start std_srvs/srv/Trigger
    ros2 service call /recorder_node/stop std_srvs/srv/SetBool "{data: true}"
Then: dpros convert ~/demos/wipe --config CONFIG --out wipe.zarr

Corrections while a policy drives (DAgger-style): start arm.launch.py with the policy, and this file
with takeover:=true: holding the deadman pauses the policy and the gamepad drives from where the
command is; the recorder lists each takeover in episode.json. Then
    dpros convert ~/demos/wipe --segments takeover --config CHECKPOINT --out wipe.zarr   # appends
    dpros train CONFIG --dataset wipe.zarr --out RUN --resume --set train.max_steps=<more>
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from diffusion_policy_ros.ros.launch_parts import realsense_camera, recorder_node, teleop_node


def generate_launch_description():
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("output_dir", default_value="recordings", description="episodes are written here"),
        DeclareLaunchArgument("task", default_value="", description="task name stored with each episode"),
        DeclareLaunchArgument("note", default_value="", description="operator note stored with each episode"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare("diffusion_policy_ros"), "config", "record.yaml"]),
            description="ROS parameter file for recorder_node and teleop_node"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("rerun", default_value="", description="live view in Rerun: spawn, or FILE.rrd to save "
                              "one (empty: the parameter file's)"),
        DeclareLaunchArgument("launch_camera", default_value="true", description="start realsense2_camera"),
        DeclareLaunchArgument("launch_joy", default_value="true", description="start joy_node (package joy)"),
        DeclareLaunchArgument("launch_teleop", default_value="true", description="start teleop_node"),
        DeclareLaunchArgument("takeover", default_value="false", description="true: teleop drives through "
                              "policy_node's takeover (deadman pauses the policy) instead of the arm's twist input"),
        DeclareLaunchArgument("serial_no", default_value="''", description="RealSense serial (several cameras)"),
        DeclareLaunchArgument("color_profile", default_value="640x480x30", description="RealSense colour profile"),
    ]
    camera = realsense_camera("launch_camera")
    joy = Node(package="joy", executable="joy_node", name="joy_node", output="screen",
               parameters=[{"autorepeat_rate": 50.0, "deadzone": 0.05}], condition=IfCondition(arg("launch_joy")))
    teleop = teleop_node("launch_teleop")  # takeover:=true points it at policy_node's takeover topics
    recorder = recorder_node()  # string-typed task/note/output_dir, ~ expanded, config checked
    return LaunchDescription(args + [camera, joy, teleop, recorder])
