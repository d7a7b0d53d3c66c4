"""diffusion_policy_ros: diffusion-policy robot controllers on ROS 2.

Everything outside ``diffusion_policy_ros.ros`` imports without ROS.
"""
__version__ = "0.1.0"
