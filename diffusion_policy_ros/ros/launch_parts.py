"""Pieces the launch files share. The parameter builders are plain functions of the launch arguments'
string values (tested without `launch`); the actions import `launch` / `launch_ros` lazily, as only a
ROS installation has them.

Launch arguments reach nodes as strings on purpose: launch_ros YAML-types a plain substitution, so
`task:=1` would arrive as an INTEGER for a STRING parameter (the node dies), `note:=yes` as a bool and
`note:='grip: firm'` or a date raise in launch_ros. Every string parameter therefore goes through
``ParameterValue(value, value_type=str)``; paths have ``~`` expanded; the parameter file must exist.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

# Where each aerial output goes by default (topics.command).
AERIAL_COMMAND_TOPICS = {"multidof": "/aerial_manipulator/ee_trajectory",
                         "pose": "/aerial_manipulator/ee_pose_target",
                         "px4": "/fmu/in/trajectory_setpoint"}
# The launch arguments each builder reads (the launch files declare them).
POLICY_ARGS = {"arm": ("checkpoint", "config", "namespace", "device", "use_sim_time", "controller", "wrench_topic",
                       "rerun"),
               "aerial": ("checkpoint", "config", "namespace", "device", "use_sim_time", "output", "rerun")}
RECORDER_ARGS = ("config", "output_dir", "task", "note", "use_sim_time", "rerun")
TELEOP_ARGS = ("config", "use_sim_time", "takeover")
TRUE = ("true", "True", "1", "yes")


def expand_path(value: str) -> str:
    return os.path.expandvars(os.path.expanduser(value)) if value else value


def parameter_file(value: str) -> str:
    path = expand_path(value)
    if not Path(path).is_file():
        raise ConfigError(f"config:={value}: expected a ROS parameter file, got a path that does not exist "
                          f"({path}); the node would otherwise run on its defaults")
    return path


def policy_node_parameters(kind: str, args: dict[str, str]) -> tuple[str, dict[str, object]]:
    """(parameter file, overrides) for policy_node from the arm or aerial launch file's arguments."""
    if kind not in POLICY_ARGS:
        raise ConfigError(f"launch kind: expected one of {sorted(POLICY_ARGS)}, got {kind!r}")
    overrides: dict[str, object] = {"checkpoint": expand_path(args["checkpoint"]), "device": args["device"],
                                    "use_sim_time": args["use_sim_time"] in TRUE}
    if args.get("rerun"):  # empty: the parameter file's
        overrides["rerun"] = expand_path(args["rerun"])
    if kind == "arm":
        if args.get("controller"):  # empty: keep the parameter file's topics.command
            overrides["topics.command"] = f"/{args['controller'].strip('/')}/joint_trajectory"
        if args.get("wrench_topic"):
            overrides["topics.wrench"] = args["wrench_topic"]
    else:
        output = args["output"]
        if output not in AERIAL_COMMAND_TOPICS:
            raise ConfigError(f"output:={output}: expected one of {sorted(AERIAL_COMMAND_TOPICS)}")
        overrides.update({"output": output, "topics.command": AERIAL_COMMAND_TOPICS[output]})
    return parameter_file(args["config"]), overrides


def recorder_node_parameters(args: dict[str, str]) -> tuple[str, dict[str, object]]:
    """(parameter file, overrides) for recorder_node from record.launch.py's arguments."""
    overrides = {"output_dir": expand_path(args["output_dir"]), "task": args["task"], "note": args["note"],
                 "use_sim_time": args["use_sim_time"] in TRUE}
    if args.get("rerun"):
        overrides["rerun"] = expand_path(args["rerun"])
    return parameter_file(args["config"]), overrides


def teleop_node_parameters(args: dict[str, str]) -> tuple[str, dict[str, object]]:
    """(parameter file, overrides) for teleop_node from record.launch.py's arguments. ``takeover:=true``:
    the twist, gripper and deadman go to policy_node's takeover topics (its topics.teleop_twist,
    teleop_gripper, takeover) instead of the arm's own Cartesian interface."""
    from ..config import TopicsConfig

    overrides: dict[str, object] = {"use_sim_time": args["use_sim_time"] in TRUE}
    if args.get("takeover") in TRUE:
        t = TopicsConfig()
        overrides.update({"twist_topic": t.teleop_twist, "gripper_topic": t.teleop_gripper,
                          "takeover_topic": t.takeover})
    return parameter_file(args["config"]), overrides


def _typed(overrides: dict[str, object]) -> dict[str, object]:
    from launch_ros.parameter_descriptions import ParameterValue

    return {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in overrides.items()}


def _resolved(context, names) -> dict[str, str]:
    from launch.substitutions import LaunchConfiguration

    return {n: LaunchConfiguration(n).perform(context) for n in names}


def policy_node(kind: str):
    """The policy node, its parameters built from the resolved launch arguments (an OpaqueFunction)."""
    from launch.actions import OpaqueFunction
    from launch_ros.actions import Node

    def make(context):
        args = _resolved(context, POLICY_ARGS[kind])
        config, overrides = policy_node_parameters(kind, args)
        return [Node(package="diffusion_policy_ros", executable="policy_node", name="policy_node",
                     namespace=args["namespace"], output="screen", emulate_tty=True,
                     parameters=[config, _typed(overrides)])]
    return OpaqueFunction(function=make)


def recorder_node():
    from launch.actions import OpaqueFunction
    from launch_ros.actions import Node

    def make(context):
        config, overrides = recorder_node_parameters(_resolved(context, RECORDER_ARGS))
        return [Node(package="diffusion_policy_ros", executable="recorder_node", name="recorder_node",
                     output="screen", emulate_tty=True, parameters=[config, _typed(overrides)])]
    return OpaqueFunction(function=make)


def teleop_node(condition_arg: str = "launch_teleop"):
    from launch.actions import OpaqueFunction
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def make(context):
        config, overrides = teleop_node_parameters(_resolved(context, TELEOP_ARGS))
        return [Node(package="diffusion_policy_ros", executable="teleop_node", name="teleop_node",
                     output="screen", parameters=[config, _typed(overrides)])]
    return OpaqueFunction(function=make, condition=IfCondition(LaunchConfiguration(condition_arg)))


def realsense_camera(condition_arg: str = "launch_camera"):
    """realsense2_camera's rs_launch.py as the policy expects it: colour and depth aligned to colour,
    640x480 at 30 Hz, synchronised, under /camera/camera; started when the launch argument is true.
    ``serial_no`` (two cameras) and ``color_profile`` (a D405's colour runs at 1280x720: set
    640x480x30 or match the training data) pass through from launch arguments of those names."""
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
            "serial_no": LaunchConfiguration("serial_no", default="''"),
            "enable_color": "true",
            "enable_depth": "true",
            "align_depth.enable": "true",
            "enable_sync": "true",
            "rgb_camera.color_profile": LaunchConfiguration("color_profile", default="640x480x30"),
            "depth_module.depth_profile": "640x480x30",
            "pointcloud.enable": "false",
        }.items(),
        condition=IfCondition(LaunchConfiguration(condition_arg)),
    )
