"""The shared sampling loop, checked with oracle denoisers whose exact answer is known."""
import pytest
import torch

from diffusion_policy_ros.config import NoiseConfig
from diffusion_policy_ros.diffusion import make_scheduler, sample
from diffusion_policy_ros.errors import ConfigError

TARGET = torch.linspace(-0.8, 0.8, 2 * 8 * 3).reshape(2, 8, 3)


def oracle(prediction_type, scheduler):
    """A denoiser for data that is always TARGET: exact x0 or exact noise."""
    alphas = scheduler.alphas_cumprod

    def denoise(x, t):
        if prediction_type == "sample":
            return TARGET.clone()
        a = alphas[int(t)]
        return (x - a.sqrt() * TARGET) / (1 - a).sqrt()

    return denoise


@pytest.mark.parametrize("solver, steps", [("ddpm", 100), ("ddpm", 20), ("ddim", 10), ("ddim", 3),
                                           ("dpmsolver++", 4), ("dpmsolver++", 10)])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_every_solver_recovers_the_data_point(solver, steps, prediction_type):
    sch = make_scheduler(NoiseConfig(prediction_type=prediction_type), solver)
    g = torch.Generator().manual_seed(0)
    x = sample(oracle(prediction_type, sch), sch, TARGET.shape, num_inference_steps=steps, generator=g)
    assert torch.allclose(x, TARGET, atol=2e-3), (x - TARGET).abs().max()


def test_guidance_hook_sees_each_step_and_its_correction_is_applied():
    sch = make_scheduler(NoiseConfig(prediction_type="sample"), "ddim")
    seen = []

    def guidance(ctx):
        seen.append((ctx.step_index, ctx.timestep, ctx.alpha_bar, ctx.num_steps))
        assert torch.allclose(ctx.pred_original, TARGET)
        return torch.full_like(ctx.sample, 0.01)

    x = sample(oracle("sample", sch), sch, TARGET.shape, num_inference_steps=5, guidance=guidance,
               generator=torch.Generator().manual_seed(0))
    assert [s[0] for s in seen] == list(range(5))
    assert [s[1] for s in seen] == sch.timesteps.tolist()
    assert all(a2 > a1 for (_, _, a1, _), (_, _, a2, _) in zip(seen, seen[1:]))  # ᾱ grows as noise falls
    # The last correction is added after the final step, so it shows in the result.
    assert torch.allclose(x, TARGET + 0.01, atol=2e-3)


def test_unknown_solver_is_a_config_error():
    with pytest.raises(ConfigError, match="euler"):
        make_scheduler(NoiseConfig(), "euler")


@pytest.mark.parametrize("solver", ["ddpm", "ddim", "dpmsolver++"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_warm_start_runs_only_the_remaining_steps_and_recovers_the_data(solver, prediction_type):
    sch = make_scheduler(NoiseConfig(prediction_type=prediction_type), solver)
    calls = []
    base = oracle(prediction_type, sch)

    def counting(x, t):
        calls.append(int(t))
        return base(x, t)

    guess = TARGET + 0.3 * torch.randn(TARGET.shape, generator=torch.Generator().manual_seed(1))
    x = sample(counting, sch, TARGET.shape, num_inference_steps=10, generator=torch.Generator().manual_seed(0),
               initial=guess, start_index=6)
    assert len(calls) == 4 and calls == sch.timesteps[6:].tolist()
    assert torch.allclose(x, TARGET, atol=2e-3)


def test_warm_start_arguments_are_checked():
    sch = make_scheduler(NoiseConfig(), "ddim")
    with pytest.raises(ValueError, match="start_index"):
        sample(oracle("epsilon", sch), sch, TARGET.shape, num_inference_steps=5, initial=TARGET, start_index=5)
    with pytest.raises(ValueError, match="initial"):
        sample(oracle("epsilon", sch), sch, TARGET.shape, num_inference_steps=5, start_index=2)


@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_guided_substeps_recover_the_data_and_call_the_hook_k_times(solver):
    sch = make_scheduler(NoiseConfig(prediction_type="epsilon"), solver)
    calls = []

    def guidance(ctx):
        calls.append(ctx.timestep)
        return None

    x = sample(oracle("epsilon", sch), sch, TARGET.shape, num_inference_steps=5, generator=torch.Generator().manual_seed(0),
               guidance=guidance, substeps=3)
    assert torch.allclose(x, TARGET, atol=2e-3)
    assert calls == [t for t in sch.timesteps.tolist() for _ in range(3)]


def test_substeps_need_a_single_step_solver():
    sch = make_scheduler(NoiseConfig(), "dpmsolver++")
    with pytest.raises(ValueError, match="single-step solver"):
        sample(oracle("epsilon", sch), sch, TARGET.shape, num_inference_steps=5, substeps=2)
