"""The simulated RealSense: a fixed pinhole camera in a MuJoCo scene and what realsense-ros would
publish from it (rgb8 colour, depth in millimetres aligned to colour, 0 where invalid)."""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import ConfigError
from ..perception.pointcloud import CameraModel


@dataclass(frozen=True)
class CameraSpec:
    """A fixed pinhole camera looking from ``pos`` at ``target`` (base frame)."""

    pos: tuple[float, float, float] = (0.95, -0.5, 0.6)
    target: tuple[float, float, float] = (0.48, 0.0, 0.05)
    fovy_deg: float = 45.0
    width: int = 320
    height: int = 240
    max_range: float = 3.0  # metres; farther pixels read 0 (invalid), as on a RealSense

    def optical_rotation(self) -> np.ndarray:
        """Columns: the optical frame's x (right), y (down), z (forward) in the base frame."""
        f = np.subtract(self.target, self.pos).astype(float)
        f /= np.linalg.norm(f)
        right = np.cross(f, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-6:
            raise ConfigError(f"camera: expected a view direction not parallel to z, got {f.tolist()}")
        right /= np.linalg.norm(right)
        down = np.cross(f, right)
        return np.stack([right, down, f], axis=1)

    def extrinsic(self) -> list[float]:
        """camera_color_optical_frame → base: x, y, z, qx, qy, qz, qw (the deploy config's format)."""
        q = Rotation.from_matrix(self.optical_rotation()).as_quat()
        return [float(v) for v in (*self.pos, *q)]

    def model(self) -> CameraModel:
        fy = 0.5 * self.height / np.tan(np.radians(self.fovy_deg) / 2)
        # MuJoCo's image centre is at W/2, H/2 in pixel-edge coordinates: (W-1)/2 in pixel centres.
        return CameraModel(self.width, self.height, fy, fy, (self.width - 1) / 2, (self.height - 1) / 2)


def add_camera(world, cam: CameraSpec) -> None:
    """The scene camera 'camera' at ``cam``'s pose. MuJoCo cameras look along -z with y up: columns
    x = right, y = -down, z = -forward of the optical frame."""
    r = cam.optical_rotation() @ np.diag([1.0, -1.0, -1.0])
    q = Rotation.from_matrix(r).as_quat()
    world.add_camera(name="camera", pos=list(cam.pos), quat=[q[3], q[0], q[1], q[2]], fovy=cam.fovy_deg)


SELF_FILTERED_GROUP = 2  # geoms the depth camera does not see (a robot self-filter's job on a real cell)


class RgbdRenderer:
    """What realsense-ros publishes from a MuJoCo camera named 'camera': rgb8 colour and depth in
    millimetres aligned to it (0 = invalid or beyond ``max_range``). Geoms in ``SELF_FILTERED_GROUP``
    are drawn in colour but left out of depth, as robot_self_filter removes the robot's own points."""

    def __init__(self, model: mujoco.MjModel, camera: CameraSpec):
        self.camera = camera
        self.renderer = mujoco.Renderer(model, camera.height, camera.width)
        self.depth_option = mujoco.MjvOption()
        self.depth_option.geomgroup[SELF_FILTERED_GROUP] = 0

    def render(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        r = self.renderer
        r.disable_depth_rendering()
        r.update_scene(data, camera="camera")
        rgb = r.render().copy()
        r.enable_depth_rendering()
        r.update_scene(data, camera="camera", scene_option=self.depth_option)
        z = r.render()
        depth = np.where((z > 0) & (z < self.camera.max_range), np.round(z * 1000.0), 0).astype(np.uint16)
        return rgb, depth

    def close(self) -> None:
        self.renderer.close()


class CameraScene:
    """``render()`` and ``close()`` for a sim with ``model``, ``data``, ``cfg.camera`` and ``_renderer``."""

    _renderer: RgbdRenderer | None

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """(rgb (H, W, 3) uint8, depth (H, W) uint16 millimetres, 0 = invalid) from the scene camera."""
        if self._renderer is None:
            self._renderer = RgbdRenderer(self.model, self.cfg.camera)
        return self._renderer.render(self.data)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
