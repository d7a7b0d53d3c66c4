"""Policy inference contract: validation errors that name the key, batching, seeds, no NaN out."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_policy_ros.checkpoint import read_checkpoint_meta, save_checkpoint
from diffusion_policy_ros.config import config_from_dict, config_to_dict
from diffusion_policy_ros.errors import CheckpointError, NonFiniteActionError, ObservationError
from diffusion_policy_ros.policy import DiffusionPolicy, Policy

from .factories import shipped_small, start_obs, state_only_config


@pytest.fixture(scope="module")
def dp3_policy():
    cfg = shipped_small("dp3")
    torch.manual_seed(0)
    return Policy(DiffusionPolicy.build(cfg.policy), cfg)


def test_predict_returns_a_chunk_in_world_frame(dp3_policy):
    obs = start_obs(dp3_policy.config)
    a = dp3_policy.predict(obs, seed=0)
    assert a.shape == (dp3_policy.cfg.n_action_steps, 10) and a.dtype == np.float32
    full = dp3_policy.predict(obs, seed=0, full_horizon=True)
    assert full.shape == (dp3_policy.cfg.horizon, 10)
    start = dp3_policy.cfg.n_obs_steps - 1
    assert np.array_equal(full[start:start + len(a)], a)
    batched = dp3_policy.predict(start_obs(dp3_policy.config, batch=3), seed=0)
    assert batched.shape == (3, dp3_policy.cfg.n_action_steps, 10)


def test_seed_makes_sampling_reproducible(dp3_policy):
    obs = start_obs(dp3_policy.config)
    assert np.array_equal(dp3_policy.predict(obs, seed=5), dp3_policy.predict(obs, seed=5))
    assert not np.array_equal(dp3_policy.predict(obs, seed=5), dp3_policy.predict(obs, seed=6))


def test_bad_observations_name_key_expected_and_received(dp3_policy):
    good = start_obs(dp3_policy.config)
    to = dp3_policy.cfg.n_obs_steps

    def err(obs):
        with pytest.raises(ObservationError) as e:
            dp3_policy.predict(obs)
        return str(e.value)

    msg = err({k: v for k, v in good.items() if k != "agent_pos"})
    assert "'agent_pos' is missing" in msg and "point_cloud" in msg
    msg = err({**good, "agent_pos": np.zeros((to, 7), np.float32)})
    assert "'agent_pos'" in msg and f"({to}, 10)" in msg and f"({to}, 7)" in msg
    msg = err({**good, "point_cloud": good["point_cloud"][:, :10]})
    assert "'point_cloud'" in msg and "(2, 10, 3)" in msg
    msg = err({**good, "agent_pos": good["agent_pos"].astype(str)})
    assert "'agent_pos'" in msg and "numeric" in msg and "<U" in msg
    for bad in (np.nan, np.inf, -np.inf):
        pc = good["point_cloud"].copy()
        pc[1, 5, 2] = bad
        msg = err({**good, "point_cloud": pc})
        assert "'point_cloud'" in msg and "finite" in msg and "got 1 NaN/inf" in msg
    assert "dict" in err([1, 2, 3])


def test_no_nan_action_is_ever_returned(dp3_policy):
    cfg = dp3_policy.config
    broken = DiffusionPolicy.build(cfg.policy)
    broken.load_state_dict(dp3_policy.model.state_dict())
    with torch.no_grad():
        broken.denoiser.final[1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteActionError):
        Policy(broken, cfg).predict(start_obs(cfg), seed=0)


def test_rel_ee_policy_returns_absolute_actions_near_the_current_pose():
    data = config_to_dict(state_only_config())
    data["policy"]["action"].update(representation="rel_ee", pose_key="agent_pos")
    cfg = config_from_dict(data)
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    # A normalizer with a tiny range centred on the identity relative pose: whatever the denoiser
    # samples in [-1, 1] un-normalises to ≈ identity, so absolute actions ≈ the current pose.
    identity = torch.tensor([0, 0, 0, 1, 0, 0, 0, 1, 0, 0.5])
    model.normalizer.fields["action"].scale.fill_(1e4)
    model.normalizer.fields["action"].offset.copy_(-1e4 * identity)
    obs = start_obs(cfg)
    a = Policy(model, cfg).predict(obs, seed=0)
    assert np.allclose(a[:, :9], obs["agent_pos"][-1, :9], atol=1e-3)


@pytest.mark.parametrize("name", ["dp3", "dp3_force", "dp_image"])
def test_every_shipped_config_saves_and_loads_exactly(name, tmp_path):
    cfg = shipped_small(name)
    torch.manual_seed(1)
    model = DiffusionPolicy.build(cfg.policy)
    with torch.no_grad():  # non-default normalizer stats must survive the round trip
        for f in model.normalizer.fields.values():
            f.scale.uniform_(0.5, 2.0)
            f.offset.uniform_(-0.1, 0.1)
    save_checkpoint(tmp_path / "ckpt", cfg, model, step=3)
    meta = read_checkpoint_meta(tmp_path / "ckpt")
    assert meta["step"] == 3 and meta["action_representation"] == "abs_ee" and "package_version" in meta
    loaded_cfg, loaded = DiffusionPolicy.from_checkpoint(tmp_path / "ckpt")
    assert loaded_cfg == cfg
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    obs = start_obs(cfg)
    assert np.array_equal(Policy(model, cfg).predict(obs, seed=11),
                          Policy.from_checkpoint(tmp_path / "ckpt").predict(obs, seed=11))


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing there"):
        Policy.from_checkpoint(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("format_version: 1\n")
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        Policy.from_checkpoint(tmp_path / "half")
    cfg = state_only_config()
    save_checkpoint(tmp_path / "old", cfg, DiffusionPolicy.build(cfg.policy))
    text = (tmp_path / "old" / "config.yaml").read_text().replace("format_version: 1", "format_version: 99")
    (tmp_path / "old" / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="format_version expected 1, got 99"):
        Policy.from_checkpoint(tmp_path / "old")


def test_warm_start_input_is_validated(dp3_policy):
    obs = start_obs(dp3_policy.config)
    h, d = dp3_policy.cfg.horizon, 10
    prev = dp3_policy.predict(obs, seed=0, full_horizon=True)
    a = dp3_policy.predict(obs, seed=0, warm_start=prev, shift=2, start_index=5)
    assert a.shape == (dp3_policy.cfg.n_action_steps, d) and np.isfinite(a).all()
    with pytest.raises(ObservationError, match=rf"warm_start: expected .* shape \(1, {h}, {d}\), got \(1, 3, {d}\)"):
        dp3_policy.predict(obs, warm_start=prev[:3], start_index=5)
    bad = prev.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ObservationError, match="warm_start"):
        dp3_policy.predict(obs, warm_start=bad, start_index=5)


@pytest.mark.parametrize("solver,steps", [("ddim", 10), ("dpmsolver++", 5), ("ddpm", 20)])
def test_traced_denoiser_gives_the_same_actions(solver, steps):
    from diffusion_policy_ros.diffusion.guidance import CostGuidance, GuidanceConfig, goal_cost

    cfg = state_only_config()
    cfg.policy.inference.solver, cfg.policy.inference.num_inference_steps = solver, steps
    cfg.policy.inference.backend, cfg.policy.inference.trace = "torch", False
    torch.manual_seed(0)
    policy = Policy(DiffusionPolicy.build(cfg.policy), cfg)
    obs = start_obs(cfg, batch=4)
    eager = policy.predict(obs, seed=0, full_horizon=True)
    policy.cfg.inference.trace = True
    traced = policy.predict(obs, seed=0, full_horizon=True)
    np.testing.assert_allclose(traced, eager, atol=1e-5)
    assert len(policy.model._traced) == 1
    single = policy.predict({k: v[0] for k, v in obs.items()}, seed=0)  # another batch size: its own trace
    assert single.shape == (cfg.policy.n_action_steps, 10) and len(policy.model._traced) == 2
    tensors, _ = policy.validate(obs)
    guide = CostGuidance(policy.model, tensors, [(1.0, goal_cost(torch.tensor([0.3, 0.3, 0.3])))], GuidanceConfig())
    assert np.isfinite(policy.predict(obs, seed=0, guidance=guide)).all()


@pytest.mark.parametrize("backend,solver,steps", [("onnxruntime", "ddim", 10), ("onnxruntime", "dpmsolver++", 5),
                                                  ("openvino", "ddim", 10)])
def test_exported_backends_match_torch_and_cache_their_export_by_weights(force_checkpoint, backend, solver, steps):
    """The issue's parity bar: normalised actions within 1e-4 of torch on the same inputs and noise."""
    pytest.importorskip(backend)
    from diffusion_policy_ros.diffusion.guidance import CostGuidance, GuidanceConfig, goal_cost

    ckpt = Path(force_checkpoint)
    shutil.rmtree(ckpt / "export", ignore_errors=True)
    ref = Policy.from_checkpoint(ckpt, backend="torch", solver=solver, num_inference_steps=steps)
    ort = Policy.from_checkpoint(ckpt, backend=backend, solver=solver, num_inference_steps=steps)
    obs = start_obs(ref.config, batch=3)
    tensors, _ = ref.validate(obs)
    with torch.inference_mode():
        cond = ref.model.encode(tensors)
        a = ref.model.conditional_sample(cond, generator=torch.Generator().manual_seed(0))
        b = ort.model.conditional_sample(cond, generator=torch.Generator().manual_seed(0))
    assert (a - b).abs().max().item() <= 1e-4
    assert [k[0] for k in ort.model._ort] == [backend] and not ref.model._ort  # it really ran there
    # One export per weights and shapes, next to the checkpoint, reused by the next load.
    files = sorted((ckpt / "export").glob("denoiser-*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = Policy.from_checkpoint(ckpt, backend=backend, solver=solver, num_inference_steps=steps)
    np.testing.assert_allclose(again.predict(obs, seed=1), ort.predict(obs, seed=1), atol=1e-6)
    assert files[0].stat().st_mtime_ns == stamp
    with torch.no_grad():  # changed weights: a new export beside the old one
        next(again.model.denoiser.parameters()).add_(0.01)
    again.model._ort.clear()
    again.predict(obs, seed=1)
    assert len(list((ckpt / "export").glob("denoiser-*.onnx"))) == 2
    # The whole chunk, the observation encoder exported too (encoder-*.onnx beside the denoiser's).
    np.testing.assert_allclose(ort.predict(obs, seed=1, full_horizon=True), ref.predict(obs, seed=1, full_horizon=True),
                               atol=1e-4)
    assert any(k[1] == "encoder" for k in ort.model._ort) and list((ckpt / "export").glob("encoder-*.onnx"))
    # Cost guidance differentiates the cost with respect to x̂₀ only, not through the denoiser: it runs on
    # the exported denoiser as well, and steers it as it steers torch's.
    goal = goal_cost(torch.tensor([0.3, 0.3, 0.3]))
    gcfg = GuidanceConfig(strength=10.0, schedule="constant")
    guided = ort.predict(obs, seed=0, full_horizon=True, guidance=CostGuidance(ort.model, tensors, [(1.0, goal)], gcfg))
    assert not ort.model._traced and not ref.model._ort  # no torch trace was needed
    expected = ref.predict(obs, seed=0, full_horizon=True,
                           guidance=CostGuidance(ref.model, tensors, [(1.0, goal)], gcfg))
    np.testing.assert_allclose(guided, expected, atol=1e-3)
    assert np.abs(guided - ort.predict(obs, seed=0, full_horizon=True)).max() > 1e-2  # the guidance did something


@pytest.mark.parametrize("name", ["dp_image", "dp3"])
def test_exported_encoders_match_torch_and_training_stays_on_torch(name):
    """The image (ResNet) and point-cloud encoders on OpenVINO equal torch's on the same observation; a model
    in training mode (or one whose encoder gradients are needed) never goes there."""
    pytest.importorskip("openvino")
    from diffusion_policy_ros.config import load_config
    from diffusion_policy_ros.policy import DiffusionPolicy

    cfg = load_config(name, variant="small")
    cfg.policy.inference.backend = "openvino"
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy).eval()
    obs = {k: (torch.randint(0, 255, (2, cfg.policy.n_obs_steps, *s.shape)).float() if s.type == "rgb"
               else torch.randn(2, cfg.policy.n_obs_steps, *s.shape)) for k, s in cfg.policy.observations.items()}
    with torch.inference_mode():
        exported, reference = model.encode_for_inference(obs), model.encode(obs)
    assert any(k[1] == "encoder" for k in model._ort)
    assert (exported - reference).abs().max().item() <= 1e-4
    model.train()
    model._ort.clear()
    model.encode_for_inference(obs)
    assert not model._ort


def test_a_missing_backend_falls_back_to_torch_with_a_log_line(monkeypatch, caplog):
    from diffusion_policy_ros.model import export

    installed = {"torch"}
    monkeypatch.setattr(export, "available", lambda b: b in installed)
    monkeypatch.setattr(export, "_warned", False)
    with caplog.at_level("WARNING"):
        assert export.resolve_backend("onnxruntime") == "torch"
    assert "onnxruntime package is not installed" in caplog.text
    assert export.resolve_backend("auto") == "torch" and export.resolve_backend("torch") == "torch"
    installed.add("onnxruntime")  # auto takes the fastest installed: OpenVINO, then ONNX Runtime
    assert export.resolve_backend("auto") == "onnxruntime"
    installed.add("openvino")
    assert export.resolve_backend("auto") == "openvino"
    with pytest.raises(Exception, match="inference.backend"):
        export.resolve_backend("tensorrt")


def test_prefix_conditioning_gives_a_clean_prefix_and_scores_only_the_rest():
    """policy.max_prefix_steps = N: the denoiser sees the first d ≤ N actions clean and their outputs
    do not enter the loss; d is drawn per sample and reaches both 0 and N."""
    cfg = state_only_config()
    cfg.policy.max_prefix_steps = 5
    torch.manual_seed(0)
    model = DiffusionPolicy.build(cfg.policy)
    b, h, da = 64, cfg.policy.horizon, cfg.policy.action.dim
    obs = start_obs(cfg, batch=b)
    batch = {"obs": {k: torch.as_tensor(v) for k, v in obs.items()},
             "action": torch.randn(b, h, da) * 0.1}
    seen = {}

    def capture(module, args, out):
        seen["x"] = args[0].detach()
        out.retain_grad()
        seen["out"] = out

    handle = model.denoiser.register_forward_hook(capture)
    loss = model.compute_loss(batch)
    handle.remove()
    loss.backward()
    x0 = model.normalizer.normalize("action", batch["action"])
    clean = (seen["x"] - x0).abs().amax(-1) < 1e-6  # (B, H): steps given as they are
    d = clean.int().cumprod(1).sum(1)  # the clean prefix's length per sample
    assert int(d.max()) == 5 and int(d.min()) == 0 and not clean[:, 5:].any()
    scored = seen["out"].grad.abs().amax(-1) > 0
    assert torch.equal(scored, ~(torch.arange(h)[None] < d[:, None]))
