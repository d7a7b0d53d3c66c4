#!/usr/bin/env python3
"""640×480 16UC1 depth → cropped 1024-point FPS cloud in the robot base frame.

ours           decode_depth-equivalent scaling + PointCloudPipeline (pixel stride, crop, voxel filter,
               fpsample QuickFPS), with the default PointCloudConfig
open3d         the same reduction with open3d: create_from_depth_image with the same pixel stride
               (camera→base extrinsic) + crop + voxel_down_sample at the same voxel size +
               farthest_point_down_sample: the ratio compares pipelines on the same input size
open3d_full    what a DP3 user would write without the reduction: every pixel, exact FPS on the
               whole cropped cloud (for perspective)
All on the same analytic tabletop depth image (a plane and a box), camera 0.8 m above the table,
timed in interleaved rounds (medians, 10-90 % spread).

    python bench/perception.py [--runs 50] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from common import interleaved_ms, machine

from diffusion_policy_ros.config import PointCloudConfig
from diffusion_policy_ros.perception.pointcloud import PointCloudPipeline
from diffusion_policy_ros.perception.synthetic import D435_640, tabletop_depth


def scene():
    cam_to_base = np.eye(4)
    cam_to_base[:3, :3] = np.diag([1.0, -1.0, -1.0])
    cam_to_base[:3, 3] = [0, 0, 0.8]
    depth, _ = tabletop_depth(D435_640, (0.0, 0.15, -1.0), -0.8, box_min=(-0.06, -0.05, 0.6),
                              box_max=(0.06, 0.05, 0.7))
    return np.round(depth * 1000).astype(np.uint16), cam_to_base


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--num-points", type=int, default=1024)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    depth_mm, cam_to_base = scene()
    crop_min, crop_max = (-0.35, -0.35, -0.05), (0.35, 0.35, 0.4)
    cfg = PointCloudConfig(num_points=args.num_points, crop_min=crop_min, crop_max=crop_max,
                           extrinsic=tuple(cam_to_base.reshape(-1)))
    pipe = PointCloudPipeline(cfg, D435_640)
    calls = {"ours": lambda: pipe(depth_mm.astype(np.float32) * np.float32(0.001))}
    try:
        import open3d as o3d
    except ImportError:
        o3d = None
    sizes = {"ours": len(calls["ours"]())}
    if o3d is not None:
        intr = o3d.camera.PinholeCameraIntrinsic(640, 480, D435_640.fx, D435_640.fy, D435_640.cx, D435_640.cy)
        box = o3d.geometry.AxisAlignedBoundingBox(np.array(crop_min, float), np.array(crop_max, float))
        base_to_cam = np.linalg.inv(cam_to_base)
        image = o3d.geometry.Image(depth_mm)

        def open3d_pipeline(stride: int, voxel: float):
            pc = o3d.geometry.PointCloud.create_from_depth_image(image, intr, base_to_cam, depth_scale=1000.0,
                                                                 depth_trunc=cfg.max_depth, stride=stride)
            pc = pc.crop(box)
            if voxel > 0:
                pc = pc.voxel_down_sample(voxel)
            return pc.farthest_point_down_sample(args.num_points)

        calls["open3d"] = lambda: open3d_pipeline(cfg.pixel_stride, cfg.voxel_size)
        calls["open3d_full"] = lambda: open3d_pipeline(1, 0.0)
        sizes.update(open3d=len(calls["open3d"]().points), open3d_full=len(calls["open3d_full"]().points))
    t = interleaved_ms(calls, args.runs, {})
    result = {"runs": args.runs, "num_points": args.num_points, "output_points": sizes,
              "config": {"pixel_stride": cfg.pixel_stride, "voxel_size": cfg.voxel_size, "sampling": cfg.sampling}}
    for name, r in t.items():
        result.update({f"{name}_{k}": v for k, v in r.items() if k != "runs"})
    if o3d is not None:
        result["speedup_vs_open3d"] = round(t["open3d"]["median_ms"] / t["ours"]["median_ms"], 2)
        result["speedup_vs_open3d_full"] = round(t["open3d_full"]["median_ms"] / t["ours"]["median_ms"], 2)
    result["machine"] = machine()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"640x480 16UC1 depth -> {args.num_points}-point cropped FPS cloud, {args.runs} interleaved rounds "
              f"(stride {cfg.pixel_stride}, voxel {cfg.voxel_size} m)")
        for name in t:
            print(f"  {name:<12} median {result[name + '_median_ms']:8.2f} ms   p10-p90 {result[name + '_p10_ms']:.2f}-"
                  f"{result[name + '_p90_ms']:.2f} ms")
        if "speedup_vs_open3d" in result:
            print(f"  ours vs open3d with the same reduction: {result['speedup_vs_open3d']:.2f}x; "
                  f"vs open3d on every pixel: {result['speedup_vs_open3d_full']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
