"""The bench script's JSON contract and the demo job, run for real at small sizes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_policy_ros.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_inference_bench_json_has_the_promised_fields(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "inference.py"), "--quick", "--json",
                           "--configs", "dp3", "dp_image", "--windows", "2", "--references", "2",
                           "--episodes", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    # Headline: Diffusion Policy's loop at DDPM-100 and at our default's solver, against our rows.
    head = report["headline"]
    rows = head["rows"]
    assert set(rows) == {"dp_loop_ddpm_100", "dp_loop_ddim_10", "ddim_10", "ddim_10_onnxruntime", "ddim_10_openvino",
                         "dpmsolver++_5", "dpmsolver++_4", "ddim_10_warm5", "ddim_10_warm7", "student_1"}
    # The default: DDIM-10 on OpenVINO (the fastest backend make setup installs), at the same solver.
    default = "ddim_10_openvino"
    assert "default_action_error_vs_ddim10" not in report and [n for n, r in rows.items() if r["default"]] == [default]
    same = rows["dp_loop_ddim_10"]["median_ms"] / rows[default]["median_ms"]
    assert report["speedup_vs_dp_same_solver"] == pytest.approx(same, rel=0.01)
    assert report["speedup_vs_dp_default"] == rows[default]["speedup_vs_dp_ddpm_100"]
    assert rows[default]["action_error_m"] == pytest.approx(rows["ddim_10"]["action_error_m"], rel=1e-3)
    assert rows["ddim_10_warm7"]["denoiser_calls"] == 3 and rows["dp_loop_ddpm_100"]["runs"] == 1
    # The one-step student (its error from the shipped push_dp3 student) against DP's loop at DDIM-10.
    assert rows["student_1"]["denoiser_calls"] == 1 and report["student_median_ms"] == rows["student_1"]["median_ms"]
    assert report["student_speedup_vs_dp_ddim10"] == pytest.approx(
        rows["dp_loop_ddim_10"]["median_ms"] / rows["student_1"]["median_ms"], rel=0.01)
    assert head["quality"]["push_dp3"]["student"].endswith("push_dp3_student")
    floor = head["quality"]["push_dp3"]["ddpm100_self_error_m"]
    assert floor > 0
    for r in rows.values():  # every row's error is measured against DDPM-100 samples, its own loop's too
        assert r["action_error_m"] > 0 and r["error_vs_ddpm100"] == pytest.approx(r["action_error_m"] / floor,
                                                                                     rel=0.01, abs=1e-3)
        assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"]
    # Each row counts the denoiser calls its solver makes (timings are the bench's to report, not a test's:
    # a loaded CI machine once timed 4 calls above 100).
    assert rows["dpmsolver++_4"]["denoiser_calls"] == 4 and rows["dp_loop_ddpm_100"]["denoiser_calls"] == 100
    assert set(report["results"]) == {"dp3", "dp_image"}
    for solvers in report["results"].values():
        assert set(solvers) == {"ddim_10", "dpmsolver++_5"}
        for r in solvers.values():
            assert r["runs"] == 5
            assert 0 < r["median_ms"] <= r["p99_ms"]
            assert r["baseline_median_ms"] > 0 and r["onnxruntime_median_ms"] > 0 and r["openvino_median_ms"] > 0
    assert report["machine"]["device"] == "cpu"


def test_modes_demo_trains_samples_and_writes_its_plot(tmp_path):
    out = tmp_path / "demo"
    assert main(["modes-demo", "--out", str(out), "--episodes", "20", "--max-steps", "20", "--samples", "8",
                 "--json"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # 20 training steps cannot teach the modes (test_training checks that with a trained policy); here
    # the summary must describe the 8 real samples: its fractions agree with its counts.
    assert summary["samples"] == 8
    assert summary["in_a_mode"] == pytest.approx((summary["left"] + summary["right"]) / 8)
    assert summary["mean_abs_offset"] > 0
    assert (out / "samples.png").stat().st_size > 5000
    assert (out / "train" / "loss.png").is_file()


def test_training_bench_times_every_row_and_compares_bf16_gradients():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "training.py"), "--configs", "metaworld_dp3",
                           "--batch", "2", "--rounds", "1", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (r,) = json.loads(proc.stdout)["results"]
    assert [row["row"] for row in r["rows"]][0].startswith("baseline") and len(r["rows"]) == 3
    assert r["rows"][0]["speedup_vs_baseline"] == 1.0 and all(row["median_ms"] > 0 for row in r["rows"])
    # bf16 autocast changes the numbers but not the direction of the update.
    assert r["bf16"]["loss_bf16"] != r["bf16"]["loss_fp32"]
    assert 0.99 < r["bf16"]["gradient_cosine"] <= 1.0


def test_perception_bench_json_has_the_promised_fields():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "perception.py"), "--runs", "5", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["runs"] == 5 and 0 < r["ours_p10_ms"] <= r["ours_median_ms"] <= r["ours_p99_ms"]
    # open3d gets the same stride and voxel reduction; every pipeline returns the requested cloud.
    assert r["output_points"] == {"ours": 1024, "open3d": 1024, "open3d_full": 1024}
    assert r["speedup_vs_open3d"] == pytest.approx(r["open3d_median_ms"] / r["ours_median_ms"], rel=0.01)
    # The full row is open3d on every pixel, the reduced one on the configured stride (timings are the bench's
    # to report, not a test's).
    assert r["config"]["pixel_stride"] > 1 and r["open3d_full_median_ms"] > 0


def test_solver_quality_bench_reports_errors_for_every_sampler(tmp_path):
    from diffusion_policy_ros.config import load_config
    from diffusion_policy_ros.data.synthetic import ObstacleScene, make_obstacle_dataset
    from diffusion_policy_ros.train import Trainer

    cfg = load_config("dp3", variant="small", overrides=["train.max_steps=10", "policy.observations.point_cloud.shape=[64,3]"])
    data = make_obstacle_dataset(tmp_path / "d.zarr", n_episodes=6, scene=ObstacleScene(num_points=64), progress=False)
    ckpt = Trainer(cfg, data, tmp_path / "run", progress=False).run()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "solver_quality.py"), "--checkpoint", str(ckpt),
                           "--dataset", str(data), "--windows", "2", "--references", "3", "--runs", "2", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["windows"] == 2 and r["solvers"]["ddim_10"]["error_vs_ddim10"] == 1.0
    for s in r["solvers"].values():
        assert s["action_error_m"] >= 0 and s["median_ms"] > 0 and 1 <= s["denoiser_calls"] <= 10
