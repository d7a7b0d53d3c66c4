"""MuJoCo simulation behind the same interfaces as the real robot (scenes, tasks, experts, closed loop).

MuJoCo picks its OpenGL back end when it is imported: without a display we default to OSMesa
(software, CPU); set ``MUJOCO_GL=egl`` on a GPU machine before importing this package.
"""
import importlib.util
import os

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

# Triton (pulled in by torch._dynamo, which diffusers imports) segfaults when it loads after OSMesa's
# llvmpipe (two LLVMs in one process, measured with torch 2.14 / mujoco 3.14): load it first.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401
