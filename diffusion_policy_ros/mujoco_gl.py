"""Import before anything that imports MuJoCo (the simulator, and pytorch-kinematics, which imports it
for MJCF support): MuJoCo picks its OpenGL back end on import, and loads it then.

- Without a display, default to OSMesa (software rendering on the CPU); set ``MUJOCO_GL=egl`` on a
  GPU machine.
- Triton (pulled in by torch._dynamo, which diffusers imports) segfaults when it loads after OSMesa's
  llvmpipe (two LLVMs in one process; torch 2.14, mujoco 3.14-3.17): load it first.
"""
import importlib.util
import os

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

if os.environ.get("MUJOCO_GL") == "osmesa" and importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401
