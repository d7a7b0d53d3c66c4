"""Depth → point cloud checked against geometry (a known plane and box) and against open3d."""
import numpy as np
import pytest

from diffusion_policy_ros.config import PointCloudConfig
from diffusion_policy_ros.errors import ConfigError, ObservationError
from diffusion_policy_ros.perception.pointcloud import (CameraModel, PointCloudPipeline, depth_to_points,
                                                        extrinsic_matrix, farthest_point_indices, transform_points,
                                                        voxel_filter)
from diffusion_policy_ros.perception.synthetic import D435_640, tabletop_depth
from diffusion_policy_ros.perception.pointcloud import Intrinsics

NORMAL = np.array([0.0, -0.5, -1.0])
OFFSET = -0.8


def test_points_from_a_known_plane_and_box_land_where_geometry_says():
    depth, _ = tabletop_depth(D435_640, NORMAL, OFFSET)
    mm = np.round(depth * 1000).astype(np.uint16)  # what a 16UC1 camera publishes
    xyz = depth_to_points(mm.astype(np.float32) * 0.001, D435_640)
    n = NORMAL / np.linalg.norm(NORMAL)
    c = OFFSET / np.linalg.norm(NORMAL)
    box = (np.abs(xyz[:, 2] - 0.55) < 1e-6) & (np.abs(xyz[:, 0]) <= 0.05) & (np.abs(xyz[:, 1]) <= 0.05)
    assert box.sum() > 1000
    plane_err = np.abs(xyz[~box].astype(np.float64) @ n - c)
    assert plane_err.max() < 1e-3  # millimetre accuracy after 16UC1 quantisation
    # pixel (cx, cy) looks straight ahead: x = y = 0
    centre = depth_to_points(depth, D435_640)[np.argmin(np.abs(depth_to_points(depth, D435_640)[:, :2]).sum(1))]
    assert np.allclose(centre[:2], 0, atol=1e-3) and centre[2] == pytest.approx(0.55)


def test_matches_open3d_create_from_depth_image():
    o3d = pytest.importorskip("open3d")
    depth, _ = tabletop_depth(D435_640, NORMAL, OFFSET)
    mm = np.round(depth * 1000).astype(np.uint16)
    mm[::7, ::5] = 0  # invalid pixels
    intr = o3d.camera.PinholeCameraIntrinsic(640, 480, D435_640.fx, D435_640.fy, D435_640.cx, D435_640.cy)
    ref = np.asarray(o3d.geometry.PointCloud.create_from_depth_image(
        o3d.geometry.Image(mm), intr, np.eye(4), depth_scale=1000.0, depth_trunc=1.5, stride=1).points)
    ours = depth_to_points(mm.astype(np.float32) * 0.001, D435_640, max_depth=1.5)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5


def test_extrinsic_forms_agree_and_bad_ones_are_rejected():
    t7 = extrinsic_matrix([0.1, 0.2, 0.3, 0, 0, np.sin(np.pi / 8), np.cos(np.pi / 8)])
    t16 = extrinsic_matrix(t7.reshape(-1))
    assert np.allclose(t7, t16)
    assert np.allclose(transform_points(np.array([[1.0, 0, 0]], np.float32), t7),
                       [[0.1 + np.cos(np.pi / 4), 0.2 + np.sin(np.pi / 4), 0.3]], atol=1e-6)
    with pytest.raises(ObservationError, match="16 values"):
        extrinsic_matrix([1, 2, 3])
    with pytest.raises(ObservationError, match="rigid"):
        extrinsic_matrix(np.arange(16.0))


def test_voxel_filter_keeps_one_point_per_voxel():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 0.1, (5000, 3)).astype(np.float32)
    idx = voxel_filter(pts, 0.02)
    keys = np.floor(pts[idx] / 0.02).astype(int)
    assert len(np.unique(keys, axis=0)) == len(idx) == len(np.unique(np.floor(pts / 0.02).astype(int), axis=0))


def test_fps_spreads_points_better_than_random():
    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.normal(0, 0.01, (9000, 3)), rng.uniform(-1, 1, (1000, 3))]).astype(np.float32)
    sel = pts[farthest_point_indices(pts, 64)]
    rand = pts[rng.choice(len(pts), 64, replace=False)]

    def min_spacing(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        return d[np.triu_indices(len(p), 1)].min()

    assert min_spacing(sel) > 5 * min_spacing(rand)
    assert len(np.unique(farthest_point_indices(pts, 64))) == 64


def camera_above_table():
    """Camera 0.8 m above the table origin, looking down (camera z = -base z)."""
    t = np.eye(4)
    t[:3, :3] = np.diag([1.0, -1.0, -1.0])
    t[:3, 3] = [0, 0, 0.8]
    return t


@pytest.mark.parametrize("sampling, use_rgb", [("fps", False), ("uniform", True)])
def test_pipeline_crops_and_returns_a_fixed_size_cloud_in_the_base_frame(sampling, use_rgb):
    depth, rgb = tabletop_depth(D435_640, (0, 0, -1.0), -0.8, box_min=(-0.05, -0.05, 0.6), box_max=(0.05, 0.05, 0.7))
    cfg = PointCloudConfig(num_points=512, sampling=sampling, use_rgb=use_rgb, crop_min=(-0.3, -0.3, -0.01),
                           crop_max=(0.3, 0.3, 0.5), extrinsic=tuple(camera_above_table().reshape(-1)))
    cam = CameraModel.from_intrinsics(Intrinsics(640, 480, np.array([[615.0, 0, 320], [0, 615.0, 240], [0, 0, 1]]),
                                                 np.zeros(5), "plumb_bob"))
    pts = PointCloudPipeline(cfg, cam)(depth, rgb)
    assert pts.shape == (512, 6 if use_rgb else 3) and pts.dtype == np.float32
    xyz = pts[:, :3]
    assert (xyz >= np.array(cfg.crop_min) - 1e-6).all() and (xyz <= np.array(cfg.crop_max) + 1e-6).all()
    on_table = np.abs(xyz[:, 2]) < 1e-3
    on_box = np.abs(xyz[:, 2] - 0.2) < 1e-3  # the box top, 0.6 m from the camera = 0.2 m above the table
    assert (on_table | on_box).all() and on_box.sum() > 0
    if use_rgb:
        assert np.allclose(pts[on_box, 3:], np.array([30, 60, 200]) / 255.0)


def test_a_crop_frame_crops_an_oblique_box_and_still_returns_base_frame_points():
    """crop_frame: the box applies in a frame turned 30° about z and shifted (DP3's Meta-World crop is
    such a box); the points come back in the base frame, and a full-frame crop gives the base-frame cloud."""
    from scipy.spatial.transform import Rotation

    depth, _ = tabletop_depth(D435_640, (0, 0, -1.0), -0.8, box_min=(-0.05, -0.05, 0.6), box_max=(0.05, 0.05, 0.7))
    cam = CameraModel.from_intrinsics(Intrinsics(640, 480, np.array([[615.0, 0, 320], [0, 615.0, 240], [0, 0, 1]]),
                                                 np.zeros(5), "plumb_bob"))
    frame = np.eye(4)
    frame[:3, :3], frame[:3, 3] = Rotation.from_euler("z", 30, degrees=True).as_matrix(), [0.05, -0.02, 0.0]
    common = dict(num_points=256, voxel_size=0.0, pixel_stride=2, extrinsic=tuple(camera_above_table().reshape(-1)))
    lo, hi = np.array([-0.1, -0.05, -0.01]), np.array([0.1, 0.05, 0.3])
    pts = PointCloudPipeline(PointCloudConfig(crop_min=tuple(lo), crop_max=tuple(hi), crop_frame=tuple(
        frame.reshape(-1)), **common), cam)(depth)
    local = (pts - frame[:3, 3]) @ frame[:3, :3]  # base → crop frame
    assert ((local >= lo - 1e-5) & (local <= hi + 1e-5)).all()
    # in the base frame the cloud reaches beyond the same box taken axis-aligned (it is turned 30°)
    assert not ((pts >= lo - 1e-5) & (pts <= hi + 1e-5)).all()
    assert (np.abs(pts[:, 2]) < 1e-3).any() and (np.abs(pts[:, 2] - 0.2) < 1e-3).any()  # table and box top
    big = dict(crop_min=(-2.0, -2.0, -2.0), crop_max=(2.0, 2.0, 2.0))
    turned = PointCloudPipeline(PointCloudConfig(**big, crop_frame=tuple(frame.reshape(-1)), **common), cam)(depth)
    plain = PointCloudPipeline(PointCloudConfig(**big, **common), cam)(depth)
    # FPS sees distances only: the same cloud up to ties between equal distances (a grid has many)
    from scipy.spatial import cKDTree

    assert turned.shape == plain.shape
    gap = max(cKDTree(turned).query(plain)[0].max(), cKDTree(plain).query(turned)[0].max())
    spacing = np.median(cKDTree(plain).query(plain, k=2)[0][:, 1])
    assert gap < 2 * spacing, (gap, spacing)
    with pytest.raises(ConfigError, match="point_cloud.crop_frame"):
        PointCloudConfig(crop_frame=(0.0, 1.0))


def test_pipeline_rejects_bad_input():
    cfg = PointCloudConfig(crop_min=(5.0, 5.0, 5.0), crop_max=(6.0, 6.0, 6.0))
    pipe = PointCloudPipeline(cfg, D435_640)
    depth, _ = tabletop_depth()
    with pytest.raises(ObservationError, match="crop box"):
        pipe(depth)
    with pytest.raises(ObservationError, match=r"expected shape \(480, 640\)"):
        pipe(depth[:100])
    with pytest.raises(ConfigError, match="point_cloud.sampling"):
        PointCloudConfig(sampling="poisson")
