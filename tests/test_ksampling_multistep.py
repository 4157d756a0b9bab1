"""ComfyUI's schedules and its multistep samplers (lms, deis, uni_pc, uni_pc_bh2), checked against values
that ComfyUI 0.3.64 itself printed: its calculate_sigmas for SD1.5's model sampling, and its sampler functions
driven by an analytic denoiser (data ~ N(0.3, 0.7^2) per element, so the optimal denoiser is closed-form)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nodes.diffusion.ksampling import SigmaTable, run_sampler, schedule, training_sigmas  # noqa: E402
from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS, _k_sigmas  # noqa: E402

TABLE = SigmaTable(training_sigmas({}))  # SD1.5's scaled-linear betas

# comfy.samplers.calculate_sigmas(ModelSamplingDiscrete+EPS, name, steps), ComfyUI 0.3.64, rounded to 5 places
COMFY_SCHEDULES = {
    ("linear_quadratic", 6): [14.61464, 14.49285, 14.37106, 14.24928, 12.58483, 7.83507, 0.0],
    ("kl_optimal", 6): [14.61463, 2.63289, 1.29477, 0.71163, 0.33564, 0.02917, 0.0],
    ("normal", 6): [14.61464, 5.09241, 2.27973, 1.16286, 0.57119, 0.02917, 0.0],
    ("sgm_uniform", 6): [14.61464, 5.9489, 2.91831, 1.61558, 0.93236, 0.49355, 0.0],
    ("simple", 6): [14.61464, 5.96313, 2.91831, 1.61289, 0.93236, 0.49241, 0.0],
    ("ddim_uniform", 6): [14.43857, 5.90645, 2.90712, 1.61289, 0.93236, 0.4947, 0.04131, 0.0],  # 7 steps
    ("ddim_uniform", 2): [1.62369, 0.04131, 0.0],
    ("beta", 6): [14.61464, 8.70775, 3.67575, 1.61828, 0.7624, 0.32353, 0.0],
    ("karras", 6): [14.61464, 6.08215, 2.23215, 0.69257, 0.16976, 0.02917, 0.0],
    ("exponential", 6): [14.61464, 4.21511, 1.21571, 0.35063, 0.10113, 0.02917, 0.0],
    ("linear_quadratic", 2): [14.61464, 14.24928, 0.0],
    ("kl_optimal", 2): [14.61463, 0.02917, 0.0],
}

# ComfyUI's sample_lms / sample_deis / sample_unipc(_bh2) on the analytic denoiser from x below; uni_pc's
# schedules have the penultimate sigma discarded (one step longer, then dropped), as KSampler does
COMFY_SAMPLES = {
    ("lms", "karras", 4): [-0.161281, 0.516723, 1.194726, 0.403722],
    ("deis", "karras", 4): [-0.236863, 0.552233, 1.34133, 0.420717],
    ("uni_pc", "karras", 4): [-0.40581, 0.63161, 1.669029, 0.458706],
    ("uni_pc_bh2", "karras", 4): [-0.291289, 0.577804, 1.446898, 0.432956],
    ("lms", "normal", 10): [-0.401632, 0.629647, 1.660926, 0.457767],
    ("deis", "normal", 10): [-0.40577, 0.631591, 1.668952, 0.458697],
    ("uni_pc", "normal", 10): [-0.351091, 0.605901, 1.562893, 0.446402],
    ("uni_pc_bh2", "normal", 10): [-0.345338, 0.603198, 1.551734, 0.445109],
    ("lms", "ddim_uniform", 6): [-0.364027, 0.61174, 1.587507, 0.449112],
    ("deis", "ddim_uniform", 6): [-0.38648, 0.62228, 1.631041, 0.454154],
    ("uni_pc", "ddim_uniform", 6): [-0.314579, 0.588302, 1.491183, 0.437822],
    ("uni_pc_bh2", "ddim_uniform", 6): [-0.306016, 0.584285, 1.474585, 0.435901],
}
MU, STD = 0.3, 0.7


def gaussian_denoiser(x, sigma: float):
    return MU + (x - MU) * STD ** 2 / (STD ** 2 + sigma ** 2)


@pytest.mark.parametrize(("name", "steps"), sorted(COMFY_SCHEDULES))
def test_schedules_equal_comfyui(name: str, steps: int) -> None:
    ours = [float(v) for v in schedule(name, steps, TABLE)]
    assert ours == pytest.approx(COMFY_SCHEDULES[(name, steps)], abs=2e-5)


def test_every_comfyui_scheduler_is_offered() -> None:
    assert set(SCHEDULERS) >= {"simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                               "linear_quadratic", "kl_optimal"}
    assert {"lms", "deis", "uni_pc", "uni_pc_bh2"} <= set(SAMPLERS)


@pytest.mark.parametrize(("sampler", "scheduler", "steps"), sorted(COMFY_SAMPLES))
def test_multistep_samplers_equal_comfyui(sampler: str, scheduler: str, steps: int) -> None:
    sigmas = _k_sigmas(sampler, scheduler, steps, TABLE, 1.0, None, None, True)
    x = torch.tensor([[[[-1.0, 0.5], [2.0, 0.25]]]]) * float(sigmas[0])
    calls: list[int] = []
    out = run_sampler(sampler, gaussian_denoiser, x, sigmas, lambda a, b: None, lambda: calls.append(1))
    assert [float(v) for v in out.flatten()] == pytest.approx(COMFY_SAMPLES[(sampler, scheduler, steps)], abs=2e-5)
    assert len(calls) == len(sigmas) - 1


@pytest.mark.parametrize("sampler", ["lms", "deis", "uni_pc", "uni_pc_bh2"])
def test_multistep_samplers_solve_the_probability_flow_ode(sampler: str) -> None:
    """With 30 karras steps each lands on the exact ODE solution x0 = mu + (x_T - mu) * std / sqrt(std^2 +
    sigma_max^2) to within 2% of the data scale (UniPC stops at sigma 0.001, a difference far below that)."""
    sigmas = _k_sigmas(sampler, "karras", 30, TABLE, 1.0, None, None, True)
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8) * float(sigmas[0])
    exact = MU + (x - MU) * STD / (STD ** 2 + float(sigmas[0]) ** 2) ** 0.5
    out = run_sampler(sampler, gaussian_denoiser, x, sigmas, lambda a, b: None, lambda: None)
    assert float((out - exact).abs().max()) < 2e-2


def test_uni_pc_with_one_step_returns_its_input_as_comfyui_does() -> None:
    """ComfyUI's UniPC order is min(3, steps - 1): one step is order 0 and runs no update, so what comes back
    is the input moved into VP space (divided by sqrt(1 + sigma^2)): the unit noise itself."""
    x = torch.full((1, 1, 2, 2), 3.0)
    out = run_sampler("uni_pc", gaussian_denoiser, x, torch.tensor([14.6146, 0.0]), lambda a, b: None, lambda: None)
    assert torch.allclose(out, x / (1 + 14.6146 ** 2) ** 0.5, atol=1e-4)


# ComfyUI 0.3.64's calculate_sigmas(…, 5) for an SDXL file with `v_pred` + `ztsnr` keys (ModelSamplingDiscrete,
# zsnr) and one with `edm_vpred.sigma_min/max` = 0.002/80 (ModelSamplingContinuousEDM), rounded to 4 places
COMFY_VARIANT_SCHEDULES = {
    ("zsnr", "normal"): [4518.7637, 5.4066, 1.7713, 0.7291, 0.0292, 0.0],
    ("zsnr", "karras"): [4518.7627, 909.6913, 113.37, 5.7719, 0.0292, 0.0],
    ("zsnr", "simple"): [4518.7637, 7.4107, 2.6049, 1.2414, 0.5948, 0.0],
    ("zsnr", "beta"): [4518.7637, 14.0481, 3.0662, 1.092, 0.4114, 0.0],
    ("zsnr", "ddim_uniform"): [7.5144, 2.6266, 1.25, 0.5998, 0.0421, 0.0],
    ("edm", "normal"): [80.0, 5.6569, 0.4, 0.0283, 0.002, 0.0],
    ("edm", "karras"): [80.0, 17.5278, 2.5152, 0.1698, 0.002, 0.0],
    ("edm", "simple"): [80.0, 9.5886, 1.1493, 0.1377, 0.0165, 0.0],
    ("edm", "sgm_uniform"): [80.0, 9.609, 1.1542, 0.1386, 0.0167, 0.0],
    ("edm", "beta"): [80.0, 21.7005, 1.7198, 0.093, 0.0074, 0.0],
    ("edm", "kl_optimal"): [79.9996, 2.3549, 0.9896, 0.4123, 0.002, 0.0],
}


def _variant_file(kind: str) -> dict:
    markers = {"zsnr": {"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])},
               "edm": {"edm_vpred.sigma_max": torch.tensor(80.0), "edm_vpred.sigma_min": torch.tensor(0.002)}}
    return markers[kind]


@pytest.mark.parametrize(("kind", "name"), sorted(COMFY_VARIANT_SCHEDULES))
def test_zsnr_and_edm_sdxl_files_sample_on_comfyuis_schedules(kind: str, name: str) -> None:
    from nodes.diffusion.ksampling import sigma_table
    from nodes.diffusion.models import detect_prediction, sampling_config

    sd = _variant_file(kind)
    prediction = detect_prediction(sd, "sdxl", 4)
    assert prediction == "v_prediction"
    table = sigma_table(sampling_config(sd, "sdxl", prediction))
    ours = [float(v) for v in schedule(name, 5, table)]
    assert ours == pytest.approx(COMFY_VARIANT_SCHEDULES[(kind, name)], rel=1e-4, abs=1e-4)


def test_the_unet_timestep_is_comfyuis() -> None:
    """ComfyUI feeds the nearest training step (an integer) for discrete models, log(sigma)/4 for EDM ones."""
    from nodes.diffusion.ksampling import sigma_table
    from nodes.diffusion.models import sampling_config

    zsnr = sigma_table(sampling_config(_variant_file("zsnr"), "sdxl", "v_prediction"))
    edm = sigma_table(sampling_config(_variant_file("edm"), "sdxl", "v_prediction"))
    assert float(zsnr.sigma_to_t(torch.tensor(1.0))) == 337.0  # ComfyUI 0.3.64: 337.0
    assert float(TABLE.sigma_to_t(torch.tensor([14.6146, 0.0292]))[0]) == 999.0
    assert float(edm.sigma_to_t(torch.tensor(1.0))) == 0.0
    assert edm.percent_to_sigma(0.2) == pytest.approx(9.608995339405132)
    assert zsnr.sigma_max == pytest.approx(4518.763671875)


def test_a_playground_edm_file_is_refused_with_the_reason() -> None:
    from nodes.diffusion.models import CheckpointError, sampling_config

    with pytest.raises(CheckpointError, match="Playground v2.5"):
        sampling_config({"edm_mean": torch.zeros(4), "edm_std": torch.ones(4)}, "sdxl", "epsilon")
