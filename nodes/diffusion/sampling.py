"""KSampler's sampling loop on a diffusers UNet, with ComfyUI's samplers, schedulers and their meanings.

ComfyUI's `denoise` keeps `steps` steps of a schedule made for `steps / denoise` steps; KSamplerAdvanced's
start/end steps cut one schedule of `steps` steps. Noise comes from a CPU generator seeded with `seed`, as
in ComfyUI, so a seed gives the same noise on every device.
"""

from __future__ import annotations

import math
from typing import Any

from nodes.diffusion.ksampling import (
    K_SAMPLERS,
    K_SCHEDULES,
    SigmaTable,
    noise_sampler_for,
    prepare_noise,
    run_sampler,
    schedule,
    sigma_table,
)
from nodes.diffusion.models import DiffusionModel, torch_or_error

# ComfyUI's own sampler and scheduler lists; they give the order. KSampler offers only the subset that runs
# here (SAMPLERS, SCHEDULERS below), so a name ComfyUI has and NodeWeaver lacks fails validation by name.
COMFY_SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)
COMFY_SCHEDULERS = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                    "linear_quadratic", "kl_optimal")

# What KSampler offers and validation accepts: exactly the names that run here, in ComfyUI's order.
SAMPLERS: tuple[str, ...] = tuple(n for n in COMFY_SAMPLERS if n in K_SAMPLERS)
SCHEDULERS: tuple[str, ...] = tuple(n for n in COMFY_SCHEDULERS if n in K_SCHEDULES)


class SamplerNotSupported(ValueError):
    """A ComfyUI sampler or scheduler name that does not run here."""


def check_sampler(sampler_name: str, scheduler: str) -> bool | str:
    """True when NodeWeaver runs this sampler with this scheduler (every listed sampler runs with every listed
    scheduler), else what to use instead."""
    if sampler_name not in SAMPLERS:
        return f"sampler_name {sampler_name!r} is not available in NodeWeaver; use one of: {', '.join(SAMPLERS)}"
    if scheduler not in SCHEDULERS:
        return f"scheduler {scheduler!r} is not available in NodeWeaver; use one of: {', '.join(SCHEDULERS)}"
    return True


def _context(cond_list: list, batch: int, torch) -> tuple[Any, Any]:
    if not cond_list:
        raise ValueError("conditioning is empty")
    tensor, extras = cond_list[0][0], cond_list[0][1] if len(cond_list[0]) > 1 else {}
    return tensor.expand(batch, -1, -1) if tensor.shape[0] == 1 else tensor, extras.get("pooled_output")


def _controls(positive: list, negative: list, use_cfg: bool) -> list:
    """The ControlNet chain of each batch half ([uncond, cond] with CFG, else [cond]). The negative takes the
    positive's control when it has none and the positive's asks for it (ControlNetApply), as ComfyUI does."""
    def extras(cond: list) -> dict:
        return cond[0][1] if cond and len(cond[0]) > 1 else {}

    cond = extras(positive).get("control")
    if not use_cfg:
        return [cond]
    uncond = extras(negative).get("control")
    if uncond is None and extras(positive).get("control_apply_to_uncond"):
        uncond = cond
    return [uncond, cond]


def _match_lengths(a, b, torch):
    """Repeat the shorter of two prompt embeddings (77-token chunks) so both have one length."""
    if a.shape[1] == b.shape[1]:
        return a, b
    lcm = a.shape[1] * b.shape[1] // math.gcd(a.shape[1], b.shape[1])
    return a.repeat(1, lcm // a.shape[1], 1), b.repeat(1, lcm // b.shape[1], 1)


def sample(model: DiffusionModel, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
           positive: list, negative: list, latent: dict, denoise: float = 1.0, *, add_noise: bool = True,
           start_step: int | None = None, end_step: int | None = None, force_full_denoise: bool = True) -> dict:
    """Denoise `latent["samples"]`; returns a new LATENT dict, walking ComfyUI's sigma schedule with ComfyUI's
    sampler algorithms (ksampling, ksampling_multistep)."""
    problem = check_sampler(sampler_name, scheduler)
    if problem is not True:
        raise SamplerNotSupported(problem)
    return _k_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise,
                     add_noise, start_step, end_step, force_full_denoise)


class _Guidance:
    """Conditioning prepared once per sampling run: contexts, CFG and SDXL's extra inputs."""

    def __init__(self, model: DiffusionModel, cfg: float, positive: list, negative: list, samples, torch,
                 need_uncond: bool = False):
        batch = samples.shape[0]
        device, dtype = model.device, model.dtype
        cond, pooled = _context(positive, batch, torch)
        # cfg 1 skips the negative (ComfyUI's cfg1 optimisation) unless a CFG++ sampler reads it
        self.use_cfg = cfg != 1.0 or need_uncond
        self.last_uncond = None  # the unconditional model output of the latest call (CFG++ samplers)
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
        self.concat = None  # an inpainting UNet's extra input channels (mask + masked latent), see _inpaint_concat
        self.controls = _controls(positive, negative, self.use_cfg)  # per batch half: [uncond,] cond

    def _control_kwargs(self, model_in, timestep) -> dict[str, Any]:
        """The ControlNet residuals for the UNet: each batch half (uncond, cond) runs its conditioning's control
        chain on its own context; a half without an active control adds zeros."""
        from nodes.diffusion.controlnet import control_residuals

        halves = len(self.controls)
        samples, contexts = model_in.chunk(halves), self.context.chunk(halves)
        steps = timestep.chunk(halves) if timestep.dim() and timestep.shape[0] == model_in.shape[0] \
            else [timestep] * halves
        added: list[dict | None] = [None] * halves
        if self.added is not None:  # SDXL's pooled text and size inputs, split like the batch
            added = [{name: value.chunk(halves)[i] for name, value in self.added.items()} for i in range(halves)]
        found = [control_residuals(c, x, t, ctx, a)
                 for c, x, t, ctx, a in zip(self.controls, samples, steps, contexts, added, strict=True)]
        if all(r is None for r in found):
            return {}
        shapes = next(r for r in found if r is not None)
        filled = [r if r is not None else ([d.new_zeros(d.shape) for d in shapes[0]], shapes[1].new_zeros(
            shapes[1].shape)) for r in found]
        dtype = self.model.dtype
        down = [torch_or_error().cat([r[0][i] for r in filled]).to(dtype) for i in range(len(shapes[0]))]
        return {"down_block_additional_residuals": tuple(down),
                "mid_block_additional_residual": torch_or_error().cat([r[1] for r in filled]).to(dtype)}

    def predict(self, model_in, timestep):
        """The UNet's output with classifier-free guidance applied."""
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.context}
        if any(c is not None for c in self.controls):  # on the latent alone, before an inpainting concat
            kwargs.update(self._control_kwargs(model_in, timestep))
        if self.concat is not None:  # after the input scaling, as ComfyUI's c_concat: the mask is not scaled
            model_in = torch_or_error().cat([model_in, self.concat.to(model_in)], dim=1)
        if self.added is not None:
            kwargs["added_cond_kwargs"] = self.added
        out = self.model.unet(model_in.to(self.model.dtype), timestep, **kwargs).sample.float()
        if self.use_cfg:
            out_uncond, out_cond = out.chunk(2)
            out = out_uncond + self.cfg * (out_cond - out_uncond)
            self.last_uncond = out_uncond
        else:
            self.last_uncond = out
        return out


# ---- noise masks (inpainting): ComfyUI's KSamplerX0Inpaint and an inpainting UNet's concat inputs ----

# An SD inpainting UNet's "masked image" when nothing is masked: pixel-space 0 in SD latent space (ComfyUI's)
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


def _repeat_to_batch(tensor, batch: int):
    """ComfyUI's repeat_to_batch_size: cut a longer batch, cycle a shorter one."""
    if tensor.shape[0] > batch:
        return tensor[:batch]
    if tensor.shape[0] < batch:
        return tensor.repeat(math.ceil(batch / tensor.shape[0]), *[1] * (tensor.dim() - 1))[:batch]
    return tensor


def _resize_to_batch(tensor, batch: int):
    """ComfyUI's resize_to_batch_size: pick evenly spread items to reach `batch`."""
    size = tensor.shape[0]
    if size == batch or batch <= 1:
        return tensor[:batch]
    if batch < size:
        picks = [min(round(i * (size - 1) / (batch - 1)), size - 1) for i in range(batch)]
    else:
        picks = [min(math.floor((i + 0.5) * size / batch), size - 1) for i in range(batch)]
    return tensor[picks]


def _as_mask(mask, what: str, torch):
    """A MASK-like tensor as [B, 1, H, W] float, or a clear error naming where it came from."""
    if not isinstance(mask, torch.Tensor) or mask.dim() < 2 or mask.dim() > 4 or 0 in mask.shape:
        shape = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{what} must be a mask tensor [H, W], [B, H, W] or [B, 1, H, W]; got {shape}")
    if mask.dim() == 4 and mask.shape[1] != 1:
        mask = mask[:, :1]
    return mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])


def _latent_noise_mask(latent: dict, samples, torch):
    """ComfyUI's prepare_mask: the LATENT's noise_mask (any resolution) bilinearly resized to the latent,
    one copy per latent channel, repeated to the batch; None when the latent has no noise_mask."""
    if latent.get("noise_mask") is None:
        return None
    mask = _as_mask(latent["noise_mask"], "the latent's noise_mask", torch)
    mask = torch.nn.functional.interpolate(mask, size=tuple(samples.shape[2:]), mode="bilinear")
    return _repeat_to_batch(mask.repeat(1, samples.shape[1], 1, 1), samples.shape[0])


def _masked_denoiser(denoise_fn, mask, original, noise):
    """KSamplerX0Inpaint: before each model call the unmasked part is the original noised to this sigma, and
    the prediction keeps the original there, so only the masked part is redrawn."""
    keep = 1.0 - mask

    def masked(current, sigma: float):
        current = current * mask + (original + noise * sigma) * keep
        return denoise_fn(current, sigma) * mask + original * keep

    return masked


def _fit_latent(tensor, samples, torch):
    """A latent-shaped conditioning input resized (bilinear, centre crop) and batched to match `samples`."""
    from nodes.diffusion.image_nodes import upscale

    if tensor.shape[-2:] != samples.shape[-2:]:
        tensor = upscale(tensor.float(), samples.shape[-1], samples.shape[-2], "bilinear", "center")
    return _resize_to_batch(tensor.float(), samples.shape[0])


def _concat_for(extras: dict, samples, noise_mask, torch):
    """One conditioning's concat input for a 9-channel UNet, as ComfyUI's concat_cond builds it: [mask,
    masked-image latent] from InpaintModelConditioning (concat_mask, concat_latent_image), else the LATENT's
    noise_mask and the latent itself, else 'all masked' with a blank image."""
    mask = extras.get("concat_mask")
    if mask is None and noise_mask is not None:
        mask = noise_mask[:, :1]
    if mask is None:
        blank = torch.tensor(BLANK_INPAINT_LATENT, dtype=torch.float32).view(1, -1, 1, 1)
        return torch.cat([torch.ones_like(samples[:, :1]), torch.ones_like(samples) * blank], dim=1)
    image = extras.get("concat_latent_image")
    image = _fit_latent(samples if image is None else image, samples, torch)
    mask = _as_mask(mask, "the conditioning's concat_mask", torch)
    return torch.cat([_fit_latent(mask, samples, torch).round(), image], dim=1)


def _inpaint_concat(model: DiffusionModel, positive: list, negative: list, samples, noise_mask, use_cfg: bool,
                    torch):
    """The extra UNet input of an inpainting checkpoint (in_channels = 2 x latent + 1), batched like the
    guidance's [uncond, cond]; None for an ordinary UNet."""
    channels = int(getattr(getattr(model.unet, "config", None), "in_channels", samples.shape[1]))
    if channels == samples.shape[1]:
        return None
    if channels != 2 * samples.shape[1] + 1:
        raise ValueError(f"the model's UNet takes {channels} input channels but the latent has "
                         f"{samples.shape[1]}: use a latent made by this model family's VAE")
    samples = samples.float().cpu()

    def extras(cond: list) -> dict:
        return cond[0][1] if cond and len(cond[0]) > 1 else {}

    noise_mask = None if noise_mask is None else noise_mask.cpu()
    parts = [_concat_for(extras(c), samples, noise_mask, torch) for c in ([negative, positive] if use_cfg
                                                                          else [positive])]
    return torch.cat(parts).to(model.device)


# ComfyUI's KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS (of those run on k-diffusion here): their schedule is
# computed one step longer and its second-to-last sigma dropped
DISCARD_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


def _schedule_for(sampler_name: str, scheduler: str, steps: int, table: SigmaTable):
    if sampler_name not in DISCARD_PENULTIMATE:
        return schedule(scheduler, steps, table)
    import torch

    sigmas = schedule(scheduler, steps + 1, table)
    return torch.cat([sigmas[:-2], sigmas[-1:]])


def _k_sigmas(sampler_name: str, scheduler: str, steps: int, table: SigmaTable, denoise: float,
              start_step: int | None, end_step: int | None, force_full_denoise: bool):
    """The part of the sigma schedule this run walks: the last `steps` of a longer schedule for denoise < 1,
    or KSamplerAdvanced's [start, end] window of one schedule (ending at 0 unless noise is left in)."""
    if start_step is None:
        if denoise <= 0:
            return None
        if denoise >= 0.9999:  # the whole schedule (ddim_uniform's can hold more than `steps` steps)
            return _schedule_for(sampler_name, scheduler, steps, table)
        return _schedule_for(sampler_name, scheduler, max(1, int(steps / denoise)), table)[-(steps + 1):]
    end = min(end_step if end_step is not None else steps, steps)
    sigmas = _schedule_for(sampler_name, scheduler, steps, table)[min(start_step, steps):end + 1].clone()
    if force_full_denoise and len(sigmas) > 1:
        sigmas[-1] = 0
    return sigmas


def _k_denoiser(model: DiffusionModel, guidance: _Guidance, table: SigmaTable, batch: int, torch):
    """The UNet as a k-diffusion denoiser: (x at noise level sigma) -> predicted clean latent."""
    from runtime.progress import check_interrupted

    v_prediction = model.prediction_type == "v_prediction"
    last: dict[str, Any] = {}

    def to_denoised(current, sigma: float, out):
        if v_prediction:
            return current / (sigma ** 2 + 1.0) - out * (sigma / math.sqrt(sigma ** 2 + 1.0))
        return current - out * sigma

    def denoise_fn(current, sigma: float):
        check_interrupted()
        t = table.sigma_to_t(torch.tensor([sigma] * batch)).to(model.device)
        model_in = current * (1.0 / math.sqrt(sigma ** 2 + 1.0))
        if guidance.use_cfg:
            model_in, t = torch.cat([model_in, model_in]), torch.cat([t, t])
        out = guidance.predict(model_in, t)
        last.update(current=current, sigma=sigma)
        return to_denoised(current, sigma, out)

    def uncond():
        """The unconditional denoised of the latest call (ComfyUI's uncond_denoised, read by CFG++)."""
        return to_denoised(last["current"], last["sigma"], guidance.last_uncond)

    denoise_fn.uncond = uncond  # type: ignore[attr-defined]
    return denoise_fn


def _k_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, add_noise,
              start_step, end_step, force_full_denoise) -> dict:
    torch = torch_or_error()
    from runtime.progress import ProgressBar

    samples = latent["samples"]
    device = model.device
    table = sigma_table(model.scheduler_config)
    sigmas = _k_sigmas(sampler_name, scheduler, steps, table, denoise, start_step, end_step, force_full_denoise)
    if sigmas is None or len(sigmas) <= 1:
        return dict(latent)
    seed = int(seed) % 2 ** 64
    noise = prepare_noise(samples.shape, seed, latent.get("batch_index"))
    x = samples.to(device=device, dtype=torch.float32)
    if add_noise:
        first = float(sigmas[0])
        full = abs(first - table.sigma_max) < 1e-4 * table.sigma_max
        x = x + noise.to(device) * (math.sqrt(1.0 + first ** 2) if full else first)
    guidance = _Guidance(model, cfg, positive, negative, samples, torch, need_uncond="cfg_pp" in sampler_name)
    denoise_fn = _k_denoiser(model, guidance, table, samples.shape[0], torch)
    uncond = denoise_fn.uncond
    mask = _latent_noise_mask(latent, samples, torch)
    guidance.concat = _inpaint_concat(model, positive, negative, samples, mask, guidance.use_cfg, torch)
    if mask is not None:  # noise without add_noise is zeros, as ComfyUI's disabled noise
        keep_noise = noise if add_noise else torch.zeros_like(noise)
        if sampler_name == "ddim":  # ComfyUI's ddim re-noises the kept part with its own draw (seed + 1)
            keep_noise = torch.randn(samples.shape, generator=torch.Generator().manual_seed((seed + 1) % 2 ** 64))
        denoise_fn = _masked_denoiser(denoise_fn, mask.to(device), samples.to(device, torch.float32),
                                      keep_noise.to(device))
    bar = ProgressBar(len(sigmas) - 1)
    with model.patched(), torch.inference_mode():
        step_noise = noise_sampler_for(sampler_name, x, sigmas, seed)  # ComfyUI's: from x after noising
        x = run_sampler(sampler_name, denoise_fn, x, sigmas, step_noise, lambda: bar.update(1), uncond=uncond,
                        table=table)
    output = dict(latent)
    output["samples"] = x.to("cpu", torch.float32)
    return output
