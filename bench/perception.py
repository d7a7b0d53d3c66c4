#!/usr/bin/env python3
"""640×480 16UC1 depth → cropped 1024-point FPS cloud in the robot base frame.

ours    decode_depth-equivalent scaling + PointCloudPipeline (pixel stride, crop, voxel filter,
        fpsample QuickFPS), with the default PointCloudConfig
open3d  create_from_depth_image (camera→base extrinsic) + crop + farthest_point_down_sample,
        the pipeline a DP3 user would write with open3d
Both on the same analytic tabletop depth image (a plane and a box), camera 0.8 m above the table.

    python bench/perception.py [--runs 50] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from common import machine, time_ms

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
    ours = time_ms(lambda: pipe(depth_mm.astype(np.float32) * np.float32(0.001)), args.runs)

    result = {"ours_median_ms": round(float(np.median(ours)), 3), "ours_p99_ms": round(float(np.percentile(ours, 99)), 3),
              "runs": args.runs, "num_points": args.num_points,
              "config": {"pixel_stride": cfg.pixel_stride, "voxel_size": cfg.voxel_size, "sampling": cfg.sampling}}
    try:
        import open3d as o3d
    except ImportError:
        o3d = None
    if o3d is not None:
        intr = o3d.camera.PinholeCameraIntrinsic(640, 480, D435_640.fx, D435_640.fy, D435_640.cx, D435_640.cy)
        box = o3d.geometry.AxisAlignedBoundingBox(np.array(crop_min, float), np.array(crop_max, float))
        base_to_cam = np.linalg.inv(cam_to_base)
        image = o3d.geometry.Image(depth_mm)

        def open3d_pipeline():
            pc = o3d.geometry.PointCloud.create_from_depth_image(image, intr, base_to_cam, depth_scale=1000.0,
                                                                 depth_trunc=cfg.max_depth)
            return pc.crop(box).farthest_point_down_sample(args.num_points)

        ref = time_ms(open3d_pipeline, args.runs)
        result.update(open3d_median_ms=round(float(np.median(ref)), 3), open3d_p99_ms=round(float(np.percentile(ref, 99)), 3),
                      speedup_vs_open3d=round(float(np.median(ref) / np.median(ours)), 2))
    result["machine"] = machine()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"640x480 16UC1 depth -> {args.num_points}-point cropped FPS cloud, {args.runs} runs")
        print(f"  ours    median {result['ours_median_ms']:.2f} ms   p99 {result['ours_p99_ms']:.2f} ms")
        if "open3d_median_ms" in result:
            print(f"  open3d  median {result['open3d_median_ms']:.2f} ms   p99 {result['open3d_p99_ms']:.2f} ms   "
                  f"(ours {result['speedup_vs_open3d']:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
