"""MuJoCo simulation behind the same interfaces as the real robot (scenes, tasks, experts, closed loop).

OpenGL back end and import order: see ``diffusion_policy_ros/mujoco_gl.py``.
"""
from .. import mujoco_gl  # noqa: F401  (before MuJoCo)
