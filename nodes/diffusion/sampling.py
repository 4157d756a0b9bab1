"""KSampler's sampling loop on diffusers schedulers, with ComfyUI's sampler/scheduler names and meanings.

ComfyUI's `denoise` keeps `steps` steps of a schedule made for `steps / denoise` steps; KSamplerAdvanced's
start/end steps cut one schedule of `steps` steps. Noise comes from a CPU generator seeded with `seed`, as
in ComfyUI, so a seed gives the same noise on every device.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from nodes.diffusion.ksampling import (
    K_SAMPLERS,
    K_SCHEDULES,
    SigmaTable,
    run_sampler,
    schedule,
    training_sigmas,
)
from nodes.diffusion.models import DiffusionModel, torch_or_error

# ComfyUI's sampler and scheduler names (KSampler's choice lists).
COMFY_SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]
COMFY_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                    "linear_quadratic", "kl_optimal"]

# sampler name -> (diffusers scheduler class, config overrides)
SAMPLER_MAP: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde_gpu": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_3m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "dpmpp_3m_sde_gpu": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "uni_pc": ("UniPCMultistepScheduler", {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}),  # bh1 at 0: NaN
    "uni_pc_bh2": ("UniPCMultistepScheduler", {"solver_type": "bh2"}),
    "lcm": ("LCMScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
}
# scheduler name -> config overrides
SCHEDULE_MAP: dict[str, dict[str, Any]] = {
    "normal": {"timestep_spacing": "linspace"},
    "simple": {"timestep_spacing": "trailing"},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "ddim_uniform": {"timestep_spacing": "leading"},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
}
SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


class SamplerNotSupported(ValueError):
    """A ComfyUI sampler or scheduler name with no diffusers counterpart here."""


def check_sampler(sampler_name: str, scheduler: str) -> bool | str:
    """True when NodeWeaver can run this sampler with this scheduler, else what to use instead."""
    if sampler_name in K_SAMPLERS and scheduler in K_SCHEDULES:
        return True
    if sampler_name not in SAMPLER_MAP:
        supported = sorted(set(SAMPLER_MAP) | set(K_SAMPLERS))
        return f"sampler_name {sampler_name!r} is not available in NodeWeaver; use one of: {', '.join(supported)}"
    if scheduler not in SCHEDULE_MAP:
        supported = sorted(set(SCHEDULE_MAP) | set(K_SCHEDULES))
        return (f"scheduler {scheduler!r} is not available in NodeWeaver; use one of: "
                f"{', '.join(supported)}")
    flags = [f for f in SIGMA_FLAGS if SCHEDULE_MAP[scheduler].get(f)]
    if flags:
        try:
            import diffusers
        except ImportError:
            return True  # checked again when it runs
        accepted = inspect.signature(getattr(diffusers, SAMPLER_MAP[sampler_name][0]).__init__).parameters
        if any(f not in accepted for f in flags):
            return (f"scheduler {scheduler!r} cannot be combined with sampler_name {sampler_name!r}; "
                    "try normal, simple or sgm_uniform")
    return True


def make_scheduler(sampler_name: str, scheduler: str, model: DiffusionModel):
    problem = check_sampler(sampler_name, scheduler)
    if problem is not True:
        raise SamplerNotSupported(problem)
    import diffusers

    class_name, overrides = SAMPLER_MAP[sampler_name]
    cls = getattr(diffusers, class_name)
    try:
        from diffusers.utils import is_scipy_available
    except ImportError:  # pragma: no cover
        is_scipy_available = None
    if class_name == "LMSDiscreteScheduler" and is_scipy_available is not None and not is_scipy_available():
        raise SamplerNotSupported("sampler 'lms' needs scipy: pip install scipy (or use euler, dpmpp_2m ...)")
    accepted = set(inspect.signature(cls.__init__).parameters)
    schedule = SCHEDULE_MAP[scheduler]
    for flag in SIGMA_FLAGS:
        if schedule.get(flag) and flag not in accepted:
            raise SamplerNotSupported(f"scheduler {scheduler!r} cannot be combined with sampler {sampler_name!r}; "
                                      "try normal, simple or sgm_uniform")
    config = {k: v for k, v in model.scheduler_config.items() if not k.startswith("_")}
    config.update(prediction_type=model.prediction_type, **overrides, **schedule)
    if "timestep_spacing" not in schedule and "timestep_spacing" in accepted:
        config["timestep_spacing"] = "linspace"
    return cls.from_config({k: v for k, v in config.items() if k in accepted or k.startswith("num_train")})


def _context(cond_list: list, batch: int, torch) -> tuple[Any, Any]:
    if not cond_list:
        raise ValueError("conditioning is empty")
    tensor, extras = cond_list[0][0], cond_list[0][1] if len(cond_list[0]) > 1 else {}
    return tensor.expand(batch, -1, -1) if tensor.shape[0] == 1 else tensor, extras.get("pooled_output")


def _match_lengths(a, b, torch):
    """Repeat the shorter of two prompt embeddings (77-token chunks) so both have one length."""
    if a.shape[1] == b.shape[1]:
        return a, b
    lcm = a.shape[1] * b.shape[1] // math.gcd(a.shape[1], b.shape[1])
    return a.repeat(1, lcm // a.shape[1], 1), b.repeat(1, lcm // b.shape[1], 1)


def sample(model: DiffusionModel, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
           positive: list, negative: list, latent: dict, denoise: float = 1.0, *, add_noise: bool = True,
           start_step: int | None = None, end_step: int | None = None, force_full_denoise: bool = True) -> dict:
    """Denoise `latent["samples"]`; returns a new LATENT dict. k-diffusion samplers where they apply
    (ComfyUI's own algorithms), diffusers schedulers for the rest (uni_pc, lms, ddpm, deis, beta ...)."""
    problem = check_sampler(sampler_name, scheduler)
    if problem is not True:
        raise SamplerNotSupported(problem)
    if sampler_name in K_SAMPLERS and scheduler in K_SCHEDULES:
        return _k_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise,
                         add_noise, start_step, end_step, force_full_denoise)
    return _diffusers_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                             denoise, add_noise=add_noise, start_step=start_step, end_step=end_step,
                             force_full_denoise=force_full_denoise)


class _Guidance:
    """Conditioning prepared once per sampling run: contexts, CFG and SDXL's extra inputs."""

    def __init__(self, model: DiffusionModel, cfg: float, positive: list, negative: list, samples, torch):
        batch = samples.shape[0]
        device, dtype = model.device, model.dtype
        cond, pooled = _context(positive, batch, torch)
        self.use_cfg = cfg != 1.0
        pooled_neg = None
        if self.use_cfg:
            uncond, pooled_neg = _context(negative, batch, torch)
            uncond, cond = _match_lengths(uncond, cond, torch)
            self.context = torch.cat([uncond, cond]).to(device=device, dtype=dtype)
        else:
            self.context = cond.to(device=device, dtype=dtype)
        self.added = None
        if model.family == "sdxl":
            height, width = samples.shape[2] * 8, samples.shape[3] * 8
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype, device=device)
            if pooled is None:
                raise ValueError("SDXL needs pooled text embeddings: encode the prompt with this model's CLIP")
            embeds = pooled.expand(batch, -1)
            if self.use_cfg:
                neg = pooled_neg.expand(batch, -1) if pooled_neg is not None else torch.zeros_like(embeds)
                embeds = torch.cat([neg, embeds])
            self.added = {"text_embeds": embeds.to(device=device, dtype=dtype),
                          "time_ids": time_ids.repeat(self.context.shape[0], 1)}
        self.cfg = cfg
        self.model = model

    def predict(self, model_in, timestep):
        """The UNet's output with classifier-free guidance applied."""
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.context}
        if self.added is not None:
            kwargs["added_cond_kwargs"] = self.added
        out = self.model.unet(model_in.to(self.model.dtype), timestep, **kwargs).sample.float()
        if self.use_cfg:
            out_uncond, out_cond = out.chunk(2)
            out = out_uncond + self.cfg * (out_cond - out_uncond)
        return out


def _k_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, add_noise,
              start_step, end_step, force_full_denoise) -> dict:
    torch = torch_or_error()
    from runtime.progress import ProgressBar, check_interrupted

    samples = latent["samples"]
    device = model.device
    table = SigmaTable(training_sigmas(model.scheduler_config))
    if start_step is None:
        if denoise <= 0:
            return dict(latent)
        total = steps if denoise >= 0.9999 else max(1, int(steps / denoise))
        sigmas = schedule(scheduler, total, table)[-(steps + 1):]
    else:
        sigmas = schedule(scheduler, steps, table)
        end = min(end_step if end_step is not None else steps, steps)
        sigmas = sigmas[min(start_step, steps):end + 1].clone()
        if force_full_denoise and len(sigmas) > 1:
            sigmas[-1] = 0
    if len(sigmas) <= 1:
        return dict(latent)
    generator = torch.Generator("cpu").manual_seed(int(seed) % 2 ** 63)
    noise = torch.randn(samples.shape, generator=generator, dtype=torch.float32)
    x = samples.to(device=device, dtype=torch.float32)
    if add_noise:
        first = float(sigmas[0])
        full = abs(first - table.sigma_max) < 1e-4 * table.sigma_max
        x = x + noise.to(device) * (math.sqrt(1.0 + first ** 2) if full else first)
    guidance = _Guidance(model, cfg, positive, negative, samples, torch)
    batch = samples.shape[0]
    v_prediction = model.prediction_type == "v_prediction"

    def denoise_fn(current, sigma: float):
        check_interrupted()
        t = table.sigma_to_t(torch.tensor([sigma] * batch)).to(device)
        c_in = 1.0 / math.sqrt(sigma ** 2 + 1.0)
        model_in = current * c_in
        if guidance.use_cfg:
            model_in, t = torch.cat([model_in, model_in]), torch.cat([t, t])
        out = guidance.predict(model_in, t)
        if v_prediction:
            return current / (sigma ** 2 + 1.0) - out * (sigma / math.sqrt(sigma ** 2 + 1.0))
        return current - out * sigma

    bar = ProgressBar(len(sigmas) - 1)
    with model.patched(), torch.inference_mode():
        x = run_sampler(sampler_name, denoise_fn, x, sigmas,
                        lambda: torch.randn(samples.shape, generator=generator).to(device), lambda: bar.update(1))
    output = dict(latent)
    output["samples"] = x.to("cpu", torch.float32)
    return output


def _diffusers_sample(model: DiffusionModel, seed: int, steps: int, cfg: float, sampler_name: str,
                      scheduler: str, positive: list, negative: list, latent: dict, denoise: float = 1.0, *,
                      add_noise: bool = True, start_step: int | None = None, end_step: int | None = None,
                      force_full_denoise: bool = True) -> dict:
    torch = torch_or_error()
    from runtime.progress import ProgressBar, check_interrupted

    samples = latent["samples"]
    batch = samples.shape[0]
    device = model.device
    sched = make_scheduler(sampler_name, scheduler, model)
    if start_step is None:
        total = steps if denoise >= 0.9999 else max(1, int(steps / max(denoise, 1e-4)))
        skip, end = total - steps, total
    else:
        total = steps
        skip, end = min(start_step, steps), min(end_step if end_step is not None else steps, steps)
    if denoise <= 0 or skip >= end:
        return dict(latent)
    sched.set_timesteps(total, device=device)
    order = int(getattr(sched, "order", 1) or 1)
    timesteps = sched.timesteps[skip * order:end * order]
    if skip and hasattr(sched, "set_begin_index"):  # (UniPC breaks when told to begin at 0)
        sched.set_begin_index(skip * order)
    noise = torch.randn(samples.shape, generator=torch.Generator("cpu").manual_seed(int(seed) % 2 ** 63),
                        dtype=torch.float32)
    x = samples.to(device=device, dtype=torch.float32)
    if add_noise:
        x = sched.add_noise(x, noise.to(device), timesteps[:1].repeat(batch))
    guidance = _Guidance(model, cfg, positive, negative, samples, torch)
    step_params = set(inspect.signature(sched.step).parameters)
    generator = torch.Generator(device if device != "mps" else "cpu").manual_seed(int(seed) % 2 ** 63)
    bar = ProgressBar(len(timesteps))
    last_denoised = None
    with model.patched(), torch.inference_mode():
        for t in timesteps:
            check_interrupted()
            model_in = torch.cat([x, x]) if guidance.use_cfg else x
            model_in = sched.scale_model_input(model_in, t)
            out = guidance.predict(model_in, t)
            step_kwargs = {"generator": generator} if "generator" in step_params else {}
            result = sched.step(out, t, x, **step_kwargs)
            x = result.prev_sample
            last_denoised = getattr(result, "pred_original_sample", None)
            bar.update(1)
    if force_full_denoise and end < total and last_denoised is not None:
        x = last_denoised
    output = dict(latent)
    output["samples"] = x.to("cpu", torch.float32)
    return output
