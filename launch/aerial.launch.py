"""Aerial manipulator deployment: RealSense camera, the policy node, end-effector targets for the vehicle.

    ros2 launch diffusion_policy_ros aerial.launch.py checkpoint:=/path/to/checkpoint
    ros2 launch diffusion_policy_ros aerial.launch.py checkpoint:=... output:=px4   # needs px4_msgs

output:=multidof publishes trajectory_msgs/MultiDOFJointTrajectory on /aerial_manipulator/ee_trajectory;
output:=px4 streams px4_msgs/TrajectorySetpoint (NED) on /fmu/in/trajectory_setpoint with
OffboardControlMode beside it (run the micro XRCE-DDS agent; switch to offboard from the RC/QGC).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from diffusion_policy_ros.ros.launch_parts import realsense_camera


def generate_launch_description():
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("checkpoint", description="checkpoint folder written by `dpros train`"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare("diffusion_policy_ros"), "config", "aerial.yaml"]), description="ROS parameter file"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("device", default_value="cpu"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("output", default_value="multidof", description="multidof | px4"),
        DeclareLaunchArgument("launch_camera", default_value="true"),
    ]
    camera = realsense_camera("launch_camera")
    command = PythonExpression(["'/fmu/in/trajectory_setpoint' if '", arg("output"),
                                "' == 'px4' else '/aerial_manipulator/ee_trajectory'"])
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
                "output": arg("output"),
                "topics.command": command,
            },
        ],
    )
    return LaunchDescription(args + [camera, policy])
