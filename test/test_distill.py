"""Distillation into a one-step student: a real teacher (trained here on the two-mode scene), the real
`dpros distill` command, resume, and the properties a student must keep: it loads as any checkpoint,
reproduces its teacher's chunks from the same noise, and still commits to one of the two modes."""
import json

import numpy as np
import yaml

from diffusion_policy_ros.checkpoint import read_checkpoint_meta
from diffusion_policy_ros.cli import main
from diffusion_policy_ros.modes_demo import mode_summary
from diffusion_policy_ros.policy import Policy

from .factories import TEST_SCENE, start_obs


def test_distilled_student_is_a_one_step_checkpoint_that_keeps_its_teachers_modes(state_policy, obstacle_dataset,
                                                                                  tmp_path):
    teacher_dir = state_policy.model.checkpoint_dir
    out = tmp_path / "student"
    assert main(["distill", str(teacher_dir), "--dataset", str(obstacle_dataset), "--out", str(out),
                 "--steps", "100", "--no-progress"]) == 0
    # Resumable: a second run continues from step 100 instead of starting over.
    assert main(["distill", str(teacher_dir), "--dataset", str(obstacle_dataset), "--out", str(out),
                 "--steps", "200", "--resume", "--no-progress"]) == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [h["step"] for h in history]
    assert steps[0] == 0 and steps[-1] == 200 and steps == sorted(steps) and len(set(steps)) == len(steps)
    # Distillation reduces the gap to the teacher on the validation episodes (fixed noise).
    assert history[-1]["val_loss"] < 0.7 * history[0]["val_loss"], history

    meta = read_checkpoint_meta(out / "checkpoint")
    inference = meta["config"]["policy"]["inference"]
    assert (inference["solver"], inference["num_inference_steps"], inference["timestep_spacing"]) == \
        ("ddim", 1, "trailing")
    d = meta["distilled_from"]
    assert d["student_steps"] == 1 and d["distill_steps"] == 200
    # The weights kept are those of the smallest validation gap (never worse than not distilling at all).
    assert d["validation_gap"] == min(h["val_loss"] for h in history) <= d["undistilled_gap"] == history[0]["val_loss"]
    assert d["weights_from_step"] in steps
    teacher_meta = read_checkpoint_meta(teacher_dir)
    assert meta["provenance"] == teacher_meta.get("provenance", {})
    assert yaml.safe_load((out / "checkpoint" / "config.yaml").read_text())["step"] == 200

    student = Policy.from_checkpoint(out / "checkpoint")
    cfg = student.config
    obs = start_obs(cfg, batch=128)
    # The student reproduces the teacher's chunk from the same noise better than the teacher's own
    # network run for one step does (what distillation starts from).
    undistilled = Policy.from_checkpoint(teacher_dir, solver="ddim", num_inference_steps=1)
    undistilled.cfg.inference.timestep_spacing = "trailing"
    target = state_policy.predict(obs, seed=5, full_horizon=True)
    err_student = np.abs(student.predict(obs, seed=5, full_horizon=True) - target).mean()
    err_undistilled = np.abs(undistilled.predict(obs, seed=5, full_horizon=True) - target).mean()
    assert err_student < err_undistilled, (err_student, err_undistilled)
    # One denoising step, and the samples still commit to one mode or the other, both covered.
    s = mode_summary(TEST_SCENE.lateral_offset(student.predict(obs, seed=0, full_horizon=True)))
    assert s["in_a_mode"] >= 0.9 and min(s["left"], s["right"]) >= 0.2 * s["samples"], s
