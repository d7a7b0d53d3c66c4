"""An analytic RGB-D tabletop: a plane and a box seen by a pinhole camera, depth exact by ray casting.
For tests and benchmarks of the point-cloud pipeline (the MuJoCo simulator renders real scenes)."""
from __future__ import annotations

import numpy as np

from .pointcloud import CameraModel

D435_640 = CameraModel(640, 480, 615.0, 615.0, 320.0, 240.0)  # RealSense D435 colour-like intrinsics


def tabletop_depth(camera: CameraModel = D435_640, plane_normal=(0.0, -0.5, -1.0), plane_offset: float = -0.8,
                   box_min=(-0.05, -0.05, 0.55), box_max=(0.05, 0.05, 0.7)) -> tuple[np.ndarray, np.ndarray]:
    """→ (depth in metres (H, W) float32, rgb (H, W, 3) uint8) in the camera frame.

    The table is the plane n·X = c (camera frame); the box is axis-aligned in the camera frame."""
    n = np.asarray(plane_normal, np.float64)
    n /= np.linalg.norm(n)
    c = plane_offset / np.linalg.norm(plane_normal)
    u = (np.arange(camera.width) - camera.cx) / camera.fx
    v = (np.arange(camera.height) - camera.cy) / camera.fy
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], 1.0), axis=-1)  # z component 1
    denom = rays @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        z_plane = np.where(np.abs(denom) > 1e-9, c / denom, np.inf)
    z_plane[z_plane <= 0] = np.inf
    # Box: the front face z = box_min.z where the ray hits inside the box's x/y extent.
    lo, hi = np.asarray(box_min), np.asarray(box_max)
    zf = lo[2]
    hit = (rays[..., 0] * zf >= lo[0]) & (rays[..., 0] * zf <= hi[0]) & (rays[..., 1] * zf >= lo[1]) & \
          (rays[..., 1] * zf <= hi[1])
    depth = np.where(hit & (zf < z_plane), zf, z_plane)
    depth[~np.isfinite(depth)] = 0.0
    rgb = np.zeros((camera.height, camera.width, 3), np.uint8)
    rgb[...] = (150, 120, 90)
    rgb[hit & (zf < z_plane)] = (30, 60, 200)
    return depth.astype(np.float32), rgb
