"""k-diffusion-style samplers and ComfyUI's sigma schedules, on a diffusers UNet.

ComfyUI samples in sigma space: a schedule of noise levels (normal, karras, exponential, simple,
sgm_uniform, ddim_uniform, beta, linear_quadratic, kl_optimal) and a sampler that walks it (euler,
euler_ancestral, heun, dpm_2, dpmpp_2m, ddpm, ...; lms, deis and UniPC in ksampling_multistep).
These are the same algorithms, written against a denoiser that wraps the UNet with classifier-free
guidance, so any sampler combines with any schedule, as in ComfyUI.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

from nodes.diffusion.ksampling_extra import EXTRA_SAMPLERS, EXTRA_SDE_SAMPLERS, ancestral_step
from nodes.diffusion.ksampling_multistep import MULTISTEP_SAMPLERS

Denoise = Callable[[Any, Any], Any]  # (x, sigma) -> denoised x


def training_sigmas(config: dict[str, Any]):
    """The model's 1,000 training noise levels from its beta schedule."""
    import torch

    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    if config.get("beta_schedule", "scaled_linear") == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    if config.get("rescale_betas_zero_snr"):
        sigmas = _zero_terminal_snr(sigmas)
    return sigmas.float()


def _zero_terminal_snr(sigmas):
    """ComfyUI's rescale_zero_terminal_snr_sigmas (zsnr models): sqrt(alpha_bar) shifted and scaled so the
    last step is (almost) pure noise; ComfyUI keeps the last alpha_bar at 4.9e-8 rather than 0."""
    root = (1 / (sigmas * sigmas + 1)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alphas_bar = root ** 2
    alphas_bar[-1] = 4.8973451890853435e-08
    return ((1 - alphas_bar) / alphas_bar) ** 0.5


class SigmaTable:
    def __init__(self, sigmas):
        import torch

        self.sigmas = sigmas
        self.log_sigmas = sigmas.log()
        self.sigma_min, self.sigma_max = float(sigmas[0]), float(sigmas[-1])
        self.torch = torch

    def sigma_to_t(self, sigma):
        """The UNet's timestep for a sigma: the nearest training step, as ComfyUI's ModelSamplingDiscrete
        rounds it (k-diffusion interpolated between steps; ComfyUI does not)."""
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).float()

    def t_to_sigma(self, t):
        t = t.float()
        low, high = t.floor().long(), t.ceil().long()
        w = t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """ComfyUI's percent_to_sigma: the sigma `percent` of the way through sampling."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.t_to_sigma(self.torch.tensor((1.0 - percent) * 999.0)))


class EdmSigmaTable(SigmaTable):
    """ComfyUI's ModelSamplingContinuousEDM (SDXL files with edm_vpred.* keys, e.g. CosXL): 1,000 log-spaced
    sigmas between the model's ends, and the UNet's timestep is log(sigma) / 4 rather than a training step."""

    def __init__(self, sigma_min: float, sigma_max: float):
        import torch

        super().__init__(torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp())

    def sigma_to_t(self, sigma):
        return 0.25 * sigma.log()

    def t_to_sigma(self, t):
        return (t.float() / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        log_min = math.log(self.sigma_min)
        return math.exp((math.log(self.sigma_max) - log_min) * (1.0 - percent) + log_min)


def sigma_table(config: dict[str, Any]) -> SigmaTable:
    """The noise levels a model was trained on, from its scheduler config: an EDM scheduler's continuous range
    (diffusers' EDM* classes, or an SDXL file's edm_vpred keys), else the discrete beta schedule (zero terminal
    SNR when `rescale_betas_zero_snr`)."""
    if str(config.get("_class_name", "")).startswith("EDM"):
        if float(config.get("sigma_data", 1.0)) != 1.0:
            raise ValueError("EDM models with sigma_data other than 1 (e.g. Playground v2.5) are not supported")
        return EdmSigmaTable(float(config.get("sigma_min", 0.002)), float(config.get("sigma_max", 120.0)))
    return SigmaTable(training_sigmas(config))


def schedule(name: str, steps: int, table: SigmaTable):
    """ComfyUI's schedulers: `steps + 1` sigmas ending in 0."""
    torch = table.torch
    smin, smax = table.sigma_min, table.sigma_max
    if name == "karras":
        rho = 7.0
        ramp = torch.linspace(0, 1, steps)
        sig = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    elif name == "exponential":
        sig = torch.linspace(math.log(smax), math.log(smin), steps).exp()
    elif name in ("normal", "sgm_uniform"):
        start, end = table.sigma_to_t(torch.tensor(smax)), table.sigma_to_t(torch.tensor(smin))
        if name == "sgm_uniform":
            ts = torch.linspace(float(start), float(end), steps + 1)[:-1]
        else:
            ts = torch.linspace(float(start), float(end), steps)
        sig = torch.stack([table.t_to_sigma(t) for t in ts])
    elif name == "simple":
        stride = len(table.sigmas) / steps
        sig = torch.stack([table.sigmas[-(1 + int(i * stride))] for i in range(steps)])
    elif name == "beta":
        sig = _beta_sigmas(steps, table)
    elif name == "ddim_uniform":  # every stride-th training sigma from index 1: can be more than `steps`
        if math.isclose(float(table.sigmas[1]), 0, abs_tol=1e-5):
            stride = max(len(table.sigmas) // (steps + 1), 1)
            picked = list(range(1, len(table.sigmas), stride))
            return torch.stack([table.sigmas[i] for i in reversed(picked)]).float()
        stride = max(len(table.sigmas) // steps, 1)
        picked = list(range(1, len(table.sigmas), stride))
        sig = torch.stack([table.sigmas[i] for i in reversed(picked)])
    elif name == "linear_quadratic":
        return _linear_quadratic(steps, smax, torch)
    elif name == "kl_optimal":
        return _kl_optimal(steps, smin, smax, torch)
    else:
        raise ValueError(f"unknown schedule {name!r}")
    return torch.cat([sig.float(), sig.new_zeros([1])])


def _beta_sigmas(steps: int, table: SigmaTable, alpha: float = 0.6, beta: float = 0.6):
    """ComfyUI's beta schedule: training timesteps at the quantiles of a Beta(0.6, 0.6) distribution, so
    steps crowd at both ends; a timestep picked twice in a row is kept once (fewer steps, as in ComfyUI)."""
    try:
        from scipy.stats import beta as beta_distribution
    except ImportError as exc:
        raise ValueError("the beta scheduler needs scipy: pip install scipy (or use another scheduler)") from exc
    last = len(table.sigmas) - 1
    quantiles = [1.0 - i / steps for i in range(steps)]
    picks = [round(float(q) * last) for q in beta_distribution.ppf(quantiles, alpha, beta)]
    kept = [t for i, t in enumerate(picks) if i == 0 or t != picks[i - 1]]
    return table.torch.stack([table.sigmas[t] for t in kept])


def _linear_quadratic(steps: int, sigma_max: float, torch, threshold: float = 0.025):
    """ComfyUI's linear_quadratic schedule (from Mochi): noise falls linearly to `threshold` over the first
    half of the steps, then quadratically to 0; scaled by the largest sigma. Already ends in 0."""
    if steps == 1:
        levels = [1.0, 0.0]
    else:
        linear = steps // 2
        head = [i * threshold / linear for i in range(linear)]
        diff = linear - threshold * steps
        quadratic = steps - linear
        q_coef = diff / (linear * quadratic ** 2)
        l_coef = threshold / linear - 2 * diff / quadratic ** 2
        const = q_coef * linear ** 2
        tail = [q_coef * i ** 2 + l_coef * i + const for i in range(linear, steps)]
        levels = [1.0 - v for v in head + tail + [1.0]]
    return torch.tensor(levels, dtype=torch.float32) * float(sigma_max)


def _kl_optimal(steps: int, sigma_min: float, sigma_max: float, torch):
    """ComfyUI's kl_optimal schedule (AYS paper): sigmas evenly spaced in arctan between the model's ends."""
    if steps == 1:  # ComfyUI divides by steps - 1 here and gets NaN; one step from the top is what it means
        return torch.tensor([float(sigma_max), 0.0])
    ramp = torch.arange(steps, dtype=torch.float32).div_(steps - 1)
    sig = torch.zeros(steps + 1)
    sig[:-1] = (ramp * math.atan(sigma_min) + (1 - ramp) * math.atan(sigma_max)).tan_()
    return sig


Noise = Callable[[float, float], Any]  # (sigma, sigma_next) -> standard normal noise for that step
StepDone = Callable[[], None]

# Samplers whose per-step noise is a Brownian motion sampled at the sigmas (ComfyUI's BrownianTreeNoiseSampler);
# the _gpu variants keep the tree on the latent's device, the others on the CPU.
SDE_SAMPLERS = frozenset({"dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu"}) | EXTRA_SDE_SAMPLERS


def prepare_noise(shape, seed: int, batch_index: list[int] | None = None):
    """ComfyUI's prepare_noise: the initial noise from the CPU generator seeded with `seed`. With a
    `batch_index` (a rebatched latent) item i gets the noise the i-th draw of one-item noises gives, so a
    latent keeps its noise when the batch around it changes."""
    import torch

    generator = torch.Generator("cpu").manual_seed(int(seed))
    if batch_index is None:
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    indices = [int(i) for i in batch_index]
    if len(indices) != shape[0] or min(indices) < 0:
        raise ValueError(f"the latent's batch_index {indices} must hold one index >= 0 per item ({shape[0]})")
    draws = {}
    for i in range(max(indices) + 1):
        one = torch.randn((1, *tuple(shape)[1:]), generator=generator, dtype=torch.float32)
        if i in indices:
            draws[i] = one
    return torch.cat([draws[i] for i in indices])


def default_noise_sampler(x, seed: int) -> Noise:
    """ComfyUI's default_noise_sampler: a fresh generator on the latent's device seeded with the KSampler's
    seed (so on the CPU the first step's noise repeats the initial noise), one full-batch draw per step."""
    import torch

    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    return lambda sigma, sigma_next: torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device,
                                                 generator=generator)


class BrownianTreeNoiseSampler:
    """ComfyUI's BrownianTreeNoiseSampler: one torchsde Brownian tree over [smallest sigma > 0, largest
    sigma] seeded with the KSampler's seed; a step's noise is the normalised increment W(s_next) - W(s)."""

    def __init__(self, x, sigma_min: float, sigma_max: float, seed: int, cpu: bool = True):
        try:
            import torchsde
        except ImportError as exc:
            raise ValueError("the SDE samplers (dpmpp_2m_sde, dpmpp_3m_sde) need torchsde: pip install "
                             "torchsde (or use dpmpp_2m, euler ...)") from exc
        import torch

        self.torch, self.cpu = torch, cpu
        t0, t1 = torch.as_tensor(float(sigma_min)), torch.as_tensor(float(sigma_max))
        w0 = torch.zeros_like(x)
        if cpu:
            t0, t1, w0 = t0.cpu(), t1.cpu(), w0.detach().cpu()
        else:
            t0, t1 = t0.to(x.device), t1.to(x.device)
        self.sign = 1 if t0 < t1 else -1
        t0, t1 = (t0, t1) if t0 < t1 else (t1, t0)
        self.tree = torchsde.BrownianTree(t0, w0, t1, entropy=int(seed))
        self.device, self.dtype = x.device, x.dtype

    def __call__(self, sigma: float, sigma_next: float):
        torch = self.torch
        t0, t1 = torch.as_tensor(float(sigma)), torch.as_tensor(float(sigma_next))
        if not self.cpu:
            t0, t1 = t0.to(self.device), t1.to(self.device)
        sign = 1 if t0 < t1 else -1
        low, high = (t0, t1) if t0 < t1 else (t1, t0)
        with warnings.catch_warnings():  # float32 rounding at either end of the interval (torchsde warns; harmless)
            warnings.filterwarnings("ignore", message="Should have tb<=t1")
            warnings.filterwarnings("ignore", message="Should have ta>=t0")
            w = self.tree(low.float(), high.float())
        w = w.to(device=self.device, dtype=self.dtype) * (self.sign * sign)
        return w / (t1 - t0).abs().sqrt().to(self.device)


def noise_sampler_for(name: str, x, sigmas, seed: int) -> Noise:
    """The per-step noise ComfyUI's sampler `name` draws for this seed: a Brownian tree for the SDE samplers,
    the default seeded generator for the ancestral ones (and ddpm, lcm)."""
    if name in SDE_SAMPLERS:
        positive = [float(s) for s in sigmas if float(s) > 0]
        if not positive:
            return default_noise_sampler(x, seed)
        return BrownianTreeNoiseSampler(x, min(positive), max(float(s) for s in sigmas), seed,
                                        cpu=not name.endswith("_gpu"))
    return default_noise_sampler(x, seed)


def _euler(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        x = x + (x - d) / sig[i] * (sig[i + 1] - sig[i])
        step_done()
    return x


def _euler_ancestral(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        down, up = ancestral_step(sig[i], sig[i + 1])
        x = x + (x - d) / sig[i] * (down - sig[i])
        if sig[i + 1] > 0:
            x = x + noise(sig[i], sig[i + 1]) * up
        step_done()
    return x


def _heun(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        deriv = (x - d) / sig[i]
        dt = sig[i + 1] - sig[i]
        if sig[i + 1] == 0:
            x = x + deriv * dt
        else:
            x2 = x + deriv * dt
            d2 = denoise(x2, sig[i + 1])
            x = x + (deriv + (x2 - d2) / sig[i + 1]) / 2 * dt
        step_done()
    return x


def _dpm_2(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, ancestral: bool = False):
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        target, up = ancestral_step(sig[i], sig[i + 1]) if ancestral else (sig[i + 1], 0.0)
        deriv = (x - d) / sig[i]
        if target == 0:
            x = x + deriv * (target - sig[i])
        else:
            mid = math.exp((math.log(sig[i]) + math.log(target)) / 2)
            x2 = x + deriv * (mid - sig[i])
            d2 = denoise(x2, mid)
            x = x + (x2 - d2) / mid * (target - sig[i])
        if up:
            x = x + noise(sig[i], sig[i + 1]) * up
        step_done()
    return x


def _dpmpp_2m(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    old = None
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        if sig[i + 1] == 0:
            x = d
        else:
            t, t_next = -math.log(sig[i]), -math.log(sig[i + 1])
            h = t_next - t
            if old is None:
                d_use = d
            else:
                r = (t - (-math.log(sig[i - 1]))) / h
                d_use = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
            x = (sig[i + 1] / sig[i]) * x - math.expm1(-h) * d_use
        old = d
        step_done()
    return x


def _dpmpp_2s_ancestral(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        down, up = ancestral_step(sig[i], sig[i + 1])
        if down == 0:
            x = x + (x - d) / sig[i] * (down - sig[i])
        else:
            t, t_next = -math.log(sig[i]), -math.log(down)
            h = t_next - t
            s = t + h / 2
            x2 = (math.exp(-s) / math.exp(-t)) * x - math.expm1(-h / 2) * d
            d2 = denoise(x2, math.exp(-s))
            x = (math.exp(-t_next) / math.exp(-t)) * x - math.expm1(-h) * d2
        if sig[i + 1] > 0:
            x = x + noise(sig[i], sig[i + 1]) * up
        step_done()
    return x


def _sde_correction(x, d, history: list, hs: list[float], h: float, third: bool):
    """The multistep correction of DPM-Solver++(2M/3M) SDE (eta 1) from the earlier denoised values."""
    eta_h = h
    if third and len(history) >= 2:
        r0, r1 = hs[-1] / h, hs[-2] / h
        d1_0, d1_1 = (d - history[-1]) / r0, (history[-1] - history[-2]) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi2 = math.expm1(-h - eta_h) / (h + eta_h) + 1
        phi3 = phi2 / (h + eta_h) - 0.5
        return x + phi2 * d1 - phi3 * d2
    if history:
        d1 = (d - history[-1]) / (hs[-1] / h)
        if third:
            return x + (math.expm1(-h - eta_h) / (h + eta_h) + 1) * d1
        return x + 0.5 * (-math.expm1(-h - eta_h)) * d1
    return x


def _dpmpp_sde(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, third: bool = False):
    history: list[Any] = []
    hs: list[float] = []
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        if sig[i + 1] == 0:
            x = d
        else:
            h = math.log(sig[i]) - math.log(sig[i + 1])
            eta_h = h  # eta = 1
            x = sig[i + 1] / sig[i] * math.exp(-eta_h) * x + (-math.expm1(-h - eta_h)) * d
            x = _sde_correction(x, d, history, hs, h, third)
            x = x + noise(sig[i], sig[i + 1]) * sig[i + 1] * math.sqrt(-math.expm1(-2 * eta_h))
            hs.append(h)
        history.append(d)
        step_done()
    return x


def _lcm(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        x = d + noise(sig[i], sig[i + 1]) * sig[i + 1] if sig[i + 1] > 0 else d
        step_done()
    return x


def _ddpm(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    """Ancestral DDPM steps written in sigma space (ComfyUI's ddpm), so it follows any sigma schedule."""
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        d = denoise(x, sigma)
        eps = (x - d) / sigma
        alpha_bar, alpha_bar_next = 1.0 / (sigma ** 2 + 1.0), 1.0 / (sigma_next ** 2 + 1.0)
        alpha = alpha_bar / alpha_bar_next
        x_vp = x / math.sqrt(1.0 + sigma ** 2)  # the variance-preserving latent the DDPM step is defined on
        x = (x_vp - (1.0 - alpha) * eps / math.sqrt(1.0 - alpha_bar)) / math.sqrt(alpha)
        if sigma_next > 0:
            x = x + noise(sig[i], sig[i + 1]) * math.sqrt((1.0 - alpha) * (1.0 - alpha_bar_next) / (1.0 - alpha_bar))
            x = x * math.sqrt(1.0 + sigma_next ** 2)
        step_done()
    return x


_SAMPLER_FUNCS: dict[str, Callable[..., Any]] = {
    "euler": _euler,
    "ddim": _euler,  # ComfyUI's ddim is euler on the sigma schedule
    "euler_ancestral": _euler_ancestral,
    "heun": _heun,
    "dpm_2": _dpm_2,
    "dpm_2_ancestral": partial(_dpm_2, ancestral=True),
    "dpmpp_2m": _dpmpp_2m,
    "dpmpp_2s_ancestral": _dpmpp_2s_ancestral,
    "dpmpp_2m_sde": _dpmpp_sde,
    "dpmpp_2m_sde_gpu": _dpmpp_sde,
    "dpmpp_3m_sde": partial(_dpmpp_sde, third=True),
    "dpmpp_3m_sde_gpu": partial(_dpmpp_sde, third=True),
    "lcm": _lcm,
    "ddpm": _ddpm,
    **MULTISTEP_SAMPLERS,
    **EXTRA_SAMPLERS,
}
# The samplers and sigma schedules this module runs: any sampler combines with any schedule.
K_SAMPLERS = tuple(_SAMPLER_FUNCS)
K_SCHEDULES = ("normal", "karras", "exponential", "simple", "sgm_uniform", "ddim_uniform", "beta",
               "linear_quadratic", "kl_optimal")


def _step_noise(noise: Callable[..., Any]) -> Noise:
    """A noise source as (sigma, sigma_next) -> noise; a callable taking no arguments is accepted too."""
    try:
        takes_sigmas = len(inspect.signature(noise).parameters) >= 2
    except (TypeError, ValueError):  # a builtin without a signature: call it as ComfyUI does
        takes_sigmas = True
    return noise if takes_sigmas else (lambda sigma, sigma_next: noise())


def run_sampler(name: str, denoise: Denoise, x, sigmas, noise: Callable[..., Any], step_done: StepDone,
                uncond: Callable[[], Any] | None = None, table: SigmaTable | None = None):
    """Walk `sigmas` from x with one of ComfyUI's samplers; `noise(sigma, sigma_next)` gives the standard
    normal noise of the step from sigma to sigma_next (see noise_sampler_for for ComfyUI's). CFG++ samplers
    also read `uncond()`, the unconditional denoised of the latest `denoise` call; sa_solver takes its
    stochastic interval from the model's `table` (20% to 80% of sampling)."""
    func = _SAMPLER_FUNCS.get(name)
    if func is None:
        raise ValueError(f"sampler {name!r} is not a k-diffusion sampler here")
    kwargs: dict[str, Any] = {}
    parameters = inspect.signature(func).parameters
    if table is not None and "tau_sigmas" in parameters:
        kwargs["tau_sigmas"] = (table.percent_to_sigma(0.2), table.percent_to_sigma(0.8))
    if "uncond" in parameters:
        if uncond is None:
            raise ValueError(f"sampler {name!r} needs the unconditional prediction (uncond)")
        kwargs["uncond"] = uncond
    return func(denoise, x, [float(s) for s in sigmas], _step_noise(noise), step_done, **kwargs)
