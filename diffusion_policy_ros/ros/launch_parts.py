"""Pieces the launch files share (imported by them only: `launch` is part of a ROS installation)."""
from __future__ import annotations


def realsense_camera(condition_arg: str = "launch_camera"):
    """realsense2_camera's rs_launch.py as the policy expects it: colour and depth aligned to colour,
    640x480 at 30 Hz, synchronised, under /camera/camera; started when the launch argument is true."""
    from launch.actions import IncludeLaunchDescription
    from launch.conditions import IfCondition
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    return IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("realsense2_camera"), "launch", "rs_launch.py"])),
        launch_arguments={
            "camera_namespace": "camera",
            "camera_name": "camera",
            "enable_color": "true",
            "enable_depth": "true",
            "align_depth.enable": "true",
            "enable_sync": "true",
            "rgb_camera.color_profile": "640x480x30",
            "depth_module.depth_profile": "640x480x30",
            "pointcloud.enable": "false",
        }.items(),
        condition=IfCondition(LaunchConfiguration(condition_arg)),
    )
