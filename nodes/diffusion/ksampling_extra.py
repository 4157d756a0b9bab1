"""The rest of ComfyUI's (0.3.64) KSampler samplers, in ksampling's form
`func(denoise, x, sig, noise, step_done)`: x is in k-space (x0 + sigma * eps), `denoise(x, sigma)` gives the
denoised x, `noise(sigma, sigma_next)` the step's standard normal noise and `step_done()` marks a step.

Wiring (what the caller must do for each name so a seed gives ComfyUI's image):

- Noise. EXTRA_SDE_SAMPLERS (dpmpp_sde, dpmpp_sde_gpu, dpmpp_2m_sde_heun, dpmpp_2m_sde_heun_gpu) draw from a
  Brownian tree over [smallest sigma > 0, largest sigma] seeded with the KSampler seed: on the CPU for the
  plain names, on the latent's device for *_gpu. Every other name that draws noise (res_multistep_ancestral,
  res_multistep_ancestral_cfg_pp, euler_ancestral_cfg_pp, dpmpp_2s_ancestral_cfg_pp, er_sde, seeds_2, seeds_3,
  sa_solver, sa_solver_pece) uses ComfyUI's default noise sampler: one generator on the latent's device seeded
  with the seed, one full-batch draw per call, in the order the calls come (seeds_2 draws twice a step,
  seeds_3 three times, sa_solver only on steps whose next sigma lies in its stochastic interval). The rest
  are deterministic and never call `noise` (ComfyUI's res_multistep and dpm_fast draw and multiply by 0).
- Sigmas. Every function takes the whole schedule the KSampler would pass (with its final 0). None of these
  names is in KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS (that set is dpm_2, dpm_2_ancestral, uni_pc,
  uni_pc_bh2), so the schedule is used as the scheduler made it. dpm_fast and dpm_adaptive do not walk the
  schedule: they take sigma_max = sig[0] and sigma_min = sig[-1] (sig[-2] when the last is 0) and integrate
  between them in log-sigma; dpm_fast with len(sig) - 1 model calls on its own grid, dpm_adaptive with as
  many as its error control needs. Both raise ValueError when an end is 0; a schedule of one sigma returns x.
- step_done: once per schedule step; for dpm_fast and dpm_adaptive once per model call (dpm_fast makes
  exactly len(sig) - 1 of them, dpm_adaptive a data-dependent number, as ComfyUI's progress bar counts).
- CFG++ names (*_cfg_pp) take a keyword-only `uncond`: a zero-argument callable giving the unconditional
  (negative prompt) denoised of the most recent `denoise` call, as ComfyUI's post-cfg hook does. ComfyUI sets
  disable_cfg1_optimization for these samplers, so even at cfg 1 it runs the negative prompt and the step
  uses that prediction: at cfg 1 `uncond` is not the denoised unless the negative prediction happens to be.
- Defaults are ComfyUI's sampler_object(name) ones: eta 1, s_noise 1, r 1/2 (dpmpp_sde, seeds_2), ge_gamma 2,
  er_sde stage 3 with its default noise scaler, sa_solver predictor order 3 / corrector order 4 with
  tau 1 between the sigmas at 20% and 80% of the training schedule, dpm_adaptive order 3 rtol 0.05 atol 0.0078.

Model type: ComfyUI's half-log-SNR helpers (sigma_to_half_log_snr, offset_first_sigma_for_snr, the alphas of
sa_solver, er_sde and seeds) are written here for a discrete VP model (SD1.x, SD2, SDXL; EPS or v-prediction,
both k-diffusion denoisers): lambda = -log(sigma), alpha = 1 in k-space, no first-sigma offset. The sa_solver
interval comes from the scaled-linear 0.00085..0.012 training table those models share. Flow models (CONST)
are not covered. Per-step scalars are Python floats, except where ComfyUI's float32 shows: dpmpp_sde's stage
sigma (a Brownian tree queried one float32 step away gives other noise) and dpm_fast's and dpm_adaptive's
times and coefficients (their float32 grid decides where the model is called and when the adaptive loop
stops, and their noise-prediction form cancels large terms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

Denoise = Callable[[Any, float], Any]  # (x, sigma) -> denoised x
Noise = Callable[[float, float], Any]  # (sigma, sigma_next) -> standard normal noise
StepDone = Callable[[], None]
Uncond = Callable[[], Any]  # the unconditional denoised of the last denoise call


def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """k-diffusion's ancestral split of a step into a deterministic part (down) and fresh noise (up)."""
    if not eta or sigma_to == 0:
        return sigma_to, 0.0
    up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - up ** 2) ** 0.5, up


def _lam(sigma: float) -> float:
    """Half-log-SNR log(alpha / sigma) of a VP model in k-space (alpha 1); infinite at sigma 0."""
    return -math.log(sigma) if sigma > 0 else math.inf


def _sigma_between(sigma: float, sigma_next: float, r: float) -> float:
    """exp(-lerp(lambda, lambda_next, r)), the stage sigma of dpmpp_sde and SEEDS, computed in float32 as
    ComfyUI does: the noise sampler is queried there, and a Brownian tree queried one float32 step away
    gives visibly different noise."""
    import torch

    lam, lam_next = -torch.tensor(sigma).log(), -torch.tensor(sigma_next).log()
    return float((-(lam + r * (lam_next - lam))).exp())


# ---- DPM-Solver++ SDE (dpmpp_sde) and 2M SDE with the Heun correction ----

def dpmpp_sde(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
              eta: float = 1.0, r: float = 0.5):
    """DPM-Solver++ (stochastic): a half step to sigma_s1 and a full step, each with ancestral noise."""
    fac = 1 / (2 * r)
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        if s_next == 0:
            x = d
        else:
            lam_s = _lam(s)
            s1 = _sigma_between(s, s_next, r)
            down, up = ancestral_step(s, s1, eta)
            h = _lam(down) - lam_s
            x2 = math.exp(-h) * x - math.expm1(-h) * d
            if eta > 0:
                x2 = x2 + noise(s, s1) * up
            d2 = denoise(x2, s1)
            down, up = ancestral_step(s, s_next, eta)
            h = _lam(down) - lam_s
            x = math.exp(-h) * x - math.expm1(-h) * ((1 - fac) * d + fac * d2)
            if eta > 0:
                x = x + noise(s, s_next) * up
        step_done()
    return x


def dpmpp_2m_sde_heun(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
                      eta: float = 1.0):
    """DPM-Solver++(2M) SDE whose second-order term uses the exponential (Heun) weight, not the midpoint."""
    old = None
    h = h_last = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        if s_next == 0:
            x = d
        else:
            h = _lam(s_next) - _lam(s)
            h_eta = h * (eta + 1)
            x = s_next / s * math.exp(-h * eta) * x - math.expm1(-h_eta) * d
            if old is not None:
                x = x + (-math.expm1(-h_eta) / -h_eta + 1) * (h / h_last) * (d - old)
            if eta > 0:
                x = x + noise(s, s_next) * s_next * math.sqrt(-math.expm1(-2 * h * eta))
        old, h_last = d, h
        step_done()
    return x


# ---- heunpp2, ipndm, ipndm_v, gradient_estimation: sigma-space (Karras ODE) steps ----

def heunpp2(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    """Heun++: up to three derivative evaluations per step, weighted by sigma / sig[0]."""
    end = sig[-1]
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        deriv = (x - denoise(x, s)) / s
        dt = s_next - s
        if s_next == end:
            x = x + deriv * dt
        else:
            x2 = x + deriv * dt
            deriv2 = (x2 - denoise(x2, s_next)) / s_next
            if sig[i + 2] == end:
                w2 = s_next / (2 * sig[0])
                x = x + (deriv * (1 - w2) + deriv2 * w2) * dt
            else:
                s_next2 = sig[i + 2]
                x3 = x2 + deriv2 * (s_next2 - s_next)
                deriv3 = (x3 - denoise(x3, s_next2)) / s_next2
                w2, w3 = s_next / (3 * sig[0]), s_next2 / (3 * sig[0])
                x = x + ((1 - w2 - w3) * deriv + w2 * deriv2 + w3 * deriv3) * dt
        step_done()
    return x


def _ipndm_weights(sig: list[float], i: int, order: int, variable: bool) -> list[float]:
    """Adams-Bashforth weights of the current and earlier derivatives (fixed, or for variable steps)."""
    if not variable:
        return {1: [1.0], 2: [1.5, -0.5], 3: [23 / 12, -16 / 12, 5 / 12],
                4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}[order]
    if order == 1:
        return [1.0]
    h0, h1 = sig[i + 1] - sig[i], sig[i] - sig[i - 1]
    if order == 2:
        return [(2 + h0 / h1) / 2, -(h0 / h1) / 2]
    h2 = sig[i - 1] - sig[i - 2]
    t1 = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
    if order == 3:
        return [(2 + h0 / h1) / 2 + t1, -(h0 / h1) / 2 - (1 + h1 / h2) * t1, t1 * h1 / h2]
    h3 = sig[i - 2] - sig[i - 3]
    t2 = (((1 - h0 / (3 * (h0 + h1))) / 2 + (1 - h0 / (2 * (h0 + h1))) * h0 / (6 * (h0 + h1 + h2)))
          * (h0 * (h0 + h1) * (h0 + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3)))
    q = h1 * (h1 + h2) / (h2 * (h2 + h3))
    return [(2 + h0 / h1) / 2 + t1 + t2,
            -(h0 / h1) / 2 - (1 + h1 / h2) * t1 - (1 + h1 / h2 + q) * t2,
            t1 * h1 / h2 + (h1 / h2 + q * (1 + h2 / h3)) * t2,
            -t2 * q * h1 / h2]


def ipndm(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
          max_order: int = 4, variable: bool = False):
    """Improved pseudo numerical methods: Adams-Bashforth on the last max_order derivatives (ipndm_v:
    weights for the actual, unequal sigma steps)."""
    history: list[Any] = []  # earlier derivatives, newest last
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        deriv = (x - d) / s
        order = min(max_order, i + 1)
        if s_next == 0:
            x = d
        else:
            weights = _ipndm_weights(sig, i, order, variable)
            combined = weights[0] * deriv
            for k, w in enumerate(weights[1:], start=1):
                combined = combined + w * history[-k]
            x = x + (s_next - s) * combined
        history = (history + [deriv])[-(max_order - 1):]
        step_done()
    return x


def _gradient_estimation(denoise: Denoise, x, sig: list[float], step_done: StepDone,
                         uncond: Uncond | None, ge_gamma: float = 2.0):
    old_deriv = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        deriv = (x - (uncond() if uncond is not None else d)) / s
        dt = s_next - s
        if s_next == 0:
            x = d
        else:
            x = d + deriv * s_next if uncond is not None else x + deriv * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (deriv - old_deriv) * dt
        old_deriv = deriv
        step_done()
    return x


def gradient_estimation(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    """Euler plus a gradient-estimation correction from the previous derivative (gamma 2)."""
    return _gradient_estimation(denoise, x, sig, step_done, None)


def gradient_estimation_cfg_pp(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, *,
                               uncond: Uncond):
    """gradient_estimation with CFG++: the step re-noises the guided denoised with the unconditional noise."""
    return _gradient_estimation(denoise, x, sig, step_done, uncond)


# ---- res_multistep (and ancestral, CFG++): second-order exponential multistep ----

def _res_multistep(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
                   eta: float, uncond: Uncond | None):
    old = old_down = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        u = uncond() if uncond is not None else d
        down, up = ancestral_step(s, s_next, eta)
        if down == 0 or old is None:
            x = d + (x - u) / s * down if uncond is not None else x + (x - d) / s * (down - s)
        else:
            t, t_old, t_next, t_prev = _lam(s), _lam(old_down), _lam(down), _lam(sig[i - 1])
            h = t_next - t
            b1 = b2 = 0.0  # a repeated sigma (h 0): ComfyUI's nan_to_num zeroes both
            if h:
                c2 = (t_prev - t_old) / h
                phi1 = math.expm1(-h) / -h
                phi2 = (phi1 - 1.0) / -h
                # c2 is 0 only after a repeated sigma, where ComfyUI overflows; take the first-order step
                b1, b2 = (phi1 - phi2 / c2, phi2 / c2) if c2 else (phi1, 0.0)
            if uncond is not None:
                x = x + (d - u)
            x = math.exp(-h) * x + h * (b1 * u + b2 * old)
        if s_next > 0 and up:
            x = x + noise(s, s_next) * up
        old, old_down = u, down
        step_done()
    return x


def res_multistep(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    """RES second-order multistep (arXiv 2308.02157), deterministic."""
    return _res_multistep(denoise, x, sig, noise, step_done, 0.0, None)


def res_multistep_ancestral(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    return _res_multistep(denoise, x, sig, noise, step_done, 1.0, None)


def res_multistep_cfg_pp(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, *,
                         uncond: Uncond):
    return _res_multistep(denoise, x, sig, noise, step_done, 0.0, uncond)


def res_multistep_ancestral_cfg_pp(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, *,
                                   uncond: Uncond):
    return _res_multistep(denoise, x, sig, noise, step_done, 1.0, uncond)


# ---- er_sde ----

def _er_noise_scaler(v: float) -> float:
    return v * (math.exp(v ** 0.3) + 10.0)


def er_sde(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
           s_noise: float = 1.0, max_stage: int = 3, points: int = 200):
    """Extended reverse-time SDE solver (VP ER-SDE-Solver-3, arXiv 2309.06169); its lambda is sigma / alpha,
    which is sigma itself in k-space. The stage 2/3 integrals are ComfyUI's 200-point Riemann sums."""
    old = old_dd = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        stage = min(max_stage, i + 1)
        if s_next == 0:
            x = d
        else:
            scale_t = _er_noise_scaler(s_next)
            r = scale_t / _er_noise_scaler(s)
            x = r * x + (1 - r) * d
            if stage >= 2:
                dt = s_next - s
                step = -dt / points
                pos = [s_next + k * step for k in range(points)]
                scaled = [_er_noise_scaler(p) for p in pos]
                dd = (d - old) / (s - sig[i - 1])
                x = x + (dt + sum(1 / v for v in scaled) * step * scale_t) * dd
                if stage >= 3:
                    s_u = sum((p - s) / v for p, v in zip(pos, scaled, strict=True)) * step
                    du = (dd - old_dd) / ((s - sig[i - 2]) / 2)
                    x = x + (dt ** 2 / 2 + s_u * scale_t) * du
                old_dd = dd
            if s_noise > 0:
                var = s_next ** 2 - s ** 2 * r ** 2
                x = x + noise(s, s_next) * s_noise * (math.sqrt(var) if var > 0 else 0.0)
        old = d
        step_done()
    return x


# ---- SEEDS-2 / SEEDS-3: stochastic exponential derivative-free solvers ----

def _seeds_stage_noise(previous, seg: float, noise: Noise, sigma_a: float, sigma_b: float):
    """The SDE noise carried into the next stage: the previous stage's decayed, plus fresh noise."""
    fresh = noise(sigma_a, sigma_b) * math.sqrt(-math.expm1(2 * seg))
    return fresh if previous is None else previous * math.exp(seg) + fresh


def seeds_2(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
            eta: float = 1.0, r: float = 0.5):
    """SEEDS-2 (arXiv 2305.14267), VP data prediction, two model calls a step."""
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        if s_next == 0:
            x = d
        else:
            lam_s, lam_t = _lam(s), _lam(s_next)
            h = lam_t - lam_s
            h_eta = h * (eta + 1)
            s1 = math.exp(-(lam_s + r * (lam_t - lam_s)))
            x2 = s1 / s * math.exp(-r * h * eta) * x - math.expm1(-r * h_eta) * d
            sde = None
            if eta > 0:
                sde = _seeds_stage_noise(None, -r * h * eta, noise, s, s1)
                x2 = x2 + sde * s1
            d2 = denoise(x2, s1)
            dd = d + (d2 - d) / (2 * r)
            x = s_next / s * math.exp(-h * eta) * x - math.expm1(-h_eta) * dd
            if eta > 0:
                x = x + _seeds_stage_noise(sde, (r - 1) * h * eta, noise, s1, s_next) * s_next
        step_done()
    return x


def _phi2(h: float) -> float:
    return (math.expm1(h) - h) / h


def seeds_3(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
            eta: float = 1.0, r_1: float = 1 / 3, r_2: float = 2 / 3):
    """SEEDS-3 (arXiv 2305.14267), VP data prediction, three model calls a step."""
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        if s_next == 0:
            x = d
        else:
            lam_s, lam_t = _lam(s), _lam(s_next)
            h = lam_t - lam_s
            h_eta = h * (eta + 1)
            s1, s2 = math.exp(-(lam_s + r_1 * h)), math.exp(-(lam_s + r_2 * h))
            x2 = s1 / s * math.exp(-r_1 * h * eta) * x - math.expm1(-r_1 * h_eta) * d
            sde = None
            if eta > 0:
                sde = _seeds_stage_noise(None, -r_1 * h * eta, noise, s, s1)
                x2 = x2 + sde * s1
            d2 = denoise(x2, s1)
            a32 = r_2 / r_1 * _phi2(-r_2 * h_eta)
            a31 = math.expm1(-r_2 * h_eta) - a32
            x3 = s2 / s * math.exp(-r_2 * h * eta) * x - (a31 * d + a32 * d2)
            if eta > 0:
                sde = _seeds_stage_noise(sde, (r_1 - r_2) * h * eta, noise, s1, s2)
                x3 = x3 + sde * s2
            d3 = denoise(x3, s2)
            b3 = _phi2(-h_eta) / r_2
            b1 = math.expm1(-h_eta) - b3
            x = s_next / s * math.exp(-h * eta) * x - (b1 * d + b3 * d3)
            if eta > 0:
                x = x + _seeds_stage_noise(sde, (r_2 - 1) * h * eta, noise, s2, s_next) * s_next
        step_done()
    return x


# ---- SA-Solver: stochastic Adams predictor-corrector (arXiv 2309.05019) ----

@lru_cache(maxsize=1)
def sa_solver_tau_sigmas() -> tuple[float, float]:
    """The sigmas between which ComfyUI's default sa_solver is stochastic (tau 1): at 20% and 80% of SD's
    scaled-linear training table. KSampler passes the model's own table's (run_sampler's `table`)."""
    from nodes.diffusion.ksampling import SigmaTable, training_sigmas  # (ksampling imports this module)

    table = SigmaTable(training_sigmas({}))
    return table.percent_to_sigma(0.2), table.percent_to_sigma(0.8)


def _sa_coefficients(lambdas: list[float], lam_s: float, lam_t: float, tau: float) -> list[float]:
    """Weights of the denoised values at `lambdas` for a stochastic Adams step from lam_s to lam_t: the
    integrals of their Lagrange basis against exp((1 + tau^2) lambda), exp((1 + tau^2) lam_t) factored out
    (alpha_t is 1 in k-space). Solved as ComfyUI does: a Vandermonde system, in float64."""
    import torch

    n = len(lambdas)
    tau_mul = 1 + tau ** 2
    decay = math.exp(-tau_mul * (lam_t - lam_s))
    terms = [lam_t ** p - lam_s ** p * decay for p in range(n)]
    moments = [sum((-1) ** (p - q) * math.factorial(p) / math.factorial(q) / tau_mul ** (p - q) * terms[q]
                   for q in range(p + 1)) for p in range(n)]
    vander_t = torch.tensor([[lam ** p for lam in lambdas] for p in range(n)], dtype=torch.float64)
    solved = torch.linalg.solve(vander_t, torch.tensor(moments, dtype=torch.float64))
    return [float(v) for v in solved]


def _sa_combine(preds: list, coefficients: list[float]):
    out = coefficients[0] * preds[0]
    for c, p in zip(coefficients[1:], preds[1:], strict=True):
        out = out + c * p
    return out


def sa_solver(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, pece: bool = False,
              predictor_order: int = 3, corrector_order: int = 4, tau_sigmas: tuple[float, float] | None = None):
    """SA-Solver: a stochastic Adams predictor, then a corrector through the new denoised (PECE: the
    corrected state is evaluated again). Noise (tau 1) only while the next sigma is inside tau_sigmas."""
    start_sigma, end_sigma = tau_sigmas or sa_solver_tau_sigmas()
    lambdas = [_lam(s) for s in sig]
    x_pred, h, tau, step_noise = x, 0.0, 0.0, None
    preds: list[Any] = []
    to_end = bool(sig) and sig[-1] == 0
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x_pred, s)
        preds = (preds + [d])[-max(predictor_order, corrector_order):]
        p_order = min(predictor_order, len(preds))
        c_order = 0 if i == 0 or (s_next == 0 and not pece) else min(corrector_order, len(preds))
        if to_end:
            p_order, c_order = min(p_order, len(sig) - 2 - i), min(c_order, len(sig) - 1 - i)
        if c_order == 0:
            x = x_pred
        else:
            b = _sa_coefficients(lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i], tau)
            x = s / sig[i - 1] * math.exp(-(tau ** 2) * h) * x + _sa_combine(preds[-c_order:], b)
            if tau > 0:
                x = x + step_noise
            if pece:
                d = denoise(x, s)
                preds[-1] = d
        if s_next == 0:
            x = d
        else:
            tau = 1.0 if start_sigma >= s_next >= end_sigma else 0.0
            b = _sa_coefficients(lambdas[i - p_order + 1:i + 1], lambdas[i], lambdas[i + 1], tau)
            h = lambdas[i + 1] - lambdas[i]
            x_pred = s_next / s * math.exp(-(tau ** 2) * h) * x + _sa_combine(preds[-p_order:], b)
            if tau > 0:
                step_noise = noise(s, s_next) * s_next * math.sqrt(-math.expm1(-2 * tau ** 2 * h))
                x_pred = x_pred + step_noise
        step_done()
    return x


# ---- DPM-Solver fast / adaptive: their own grid in t = -log(sigma) between the schedule's ends ----

class _DPMSolver:
    """DPM-Solver's 1/2/3-stage steps in noise prediction, caching eps per step as k-diffusion does. The
    times and coefficients are float32 tensors as in ComfyUI: the eps form subtracts nearly equal terms at
    the low-sigma end, where double-precision coefficients drift from ComfyUI's by ~1e-5."""

    def __init__(self, denoise: Denoise, step_done: StepDone):
        self.denoise, self.step_done = denoise, step_done

    def eps(self, cache: dict, key: str, x, t):
        if key not in cache:
            sigma = (-t).exp()
            cache[key] = (x - self.denoise(x, float(sigma))) / sigma
            self.step_done()
        return cache[key]

    def step(self, order: int, x, t, t_next, cache: dict, r1: float | None = None):
        """One DPM-Solver-1/2/3 step from t to t_next (0-dim float32 tensors); r1 defaults to k-diffusion's
        1/2 (order 2) and 1/3 (order 3)."""
        r1 = r1 if r1 is not None else (1 / 2 if order == 2 else 1 / 3)
        r2 = 2 / 3
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        sigma_next = (-t_next).exp()
        base = x - sigma_next * h.expm1() * eps
        if order == 1:
            return base
        s1 = t + r1 * h
        eps_r1 = self.eps(cache, "eps_r1", x - (-s1).exp() * (r1 * h).expm1() * eps, s1)
        if order == 2:
            return base - sigma_next / (2 * r1) * h.expm1() * (eps_r1 - eps)
        s2 = t + r2 * h
        sigma_s2 = (-s2).exp()
        u2 = (x - sigma_s2 * (r2 * h).expm1() * eps
              - sigma_s2 * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return base - sigma_next / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)


def _schedule_ends(sig: list[float]) -> tuple[float, float]:
    """ComfyUI's dpm_fast/dpm_adaptive wiring: sigma_min is the last sigma, or the one before a final 0."""
    sigma_min = sig[-1] if sig[-1] != 0 else sig[-2]
    if sigma_min <= 0 or sig[0] <= 0:
        raise ValueError("dpm_fast and dpm_adaptive need a schedule whose ends (besides a final 0) are above 0")
    return sigma_min, sig[0]


def dpm_fast(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone):
    """DPM-Solver-fast: len(sig) - 1 model calls in third-order steps (a 2 and 1, or a shorter last
    one) on a uniform grid in -log(sigma) from sig[0] to the last nonzero sigma."""
    import torch

    if len(sig) <= 1:
        return x
    sigma_min, sigma_max = _schedule_ends(sig)
    nfe = len(sig) - 1
    m = nfe // 3 + 1
    t_start, t_end = -torch.tensor(sigma_max).log(), -torch.tensor(sigma_min).log()
    ts = torch.linspace(float(t_start), float(t_end), m + 1)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    solver = _DPMSolver(denoise, step_done)
    for i, order in enumerate(orders):
        x = solver.step(order, x, ts[i], ts[i + 1], {})
    return x


def dpm_adaptive(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone,
                 rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05, accept_safety: float = 0.81):
    """DPM-Solver-23 with adaptive steps: a second- and a third-order step from the same calls, the step
    size from their difference (ComfyUI's PID controller with only the integral term, order 3)."""
    import torch

    if len(sig) <= 1:
        return x
    sigma_min, sigma_max = _schedule_ends(sig)
    t_end = -torch.tensor(sigma_min).log()
    s = -torch.tensor(sigma_max).log()
    forward = bool(t_end > s)
    h = abs(h_init) * (1 if forward else -1)
    solver = _DPMSolver(denoise, step_done)
    x_prev = x
    while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
        t = torch.minimum(t_end, s + h) if forward else torch.maximum(t_end, s + h)
        cache: dict = {}
        x_low = solver.step(2, x, s, t, cache, r1=1 / 3)
        x_high = solver.step(3, x, s, t, cache)
        delta = torch.maximum(torch.tensor(atol), rtol * torch.maximum(x_low.abs(), x_prev.abs()))
        error = float(torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5)
        # the PID controller with only an integral term: the proportional/derivative history drops out
        factor = 1 + math.atan((1 / (error + 1e-8)) ** (1 / 3) - 1)
        h *= factor
        if factor >= accept_safety:
            x_prev, x, s = x_low, x_high, t
    return x


# ---- CFG++: the step re-noises with the unconditional prediction (arXiv 2406.08070) ----

def euler_ancestral_cfg_pp(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, *,
                           uncond: Uncond, eta: float = 1.0):
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        if s_next == 0:
            x = d
        else:
            down, up = ancestral_step(s, s_next, eta)
            x = d + down * (x - uncond()) / s
            if eta > 0:
                x = x + noise(s, s_next) * up
        step_done()
    return x


def euler_cfg_pp(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, *, uncond: Uncond):
    return euler_ancestral_cfg_pp(denoise, x, sig, noise, step_done, uncond=uncond, eta=0.0)


def dpmpp_2s_ancestral_cfg_pp(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, *,
                              uncond: Uncond):
    """DPM-Solver++(2S) ancestral with CFG++. As in ComfyUI, the full step uses the uncond of the midpoint
    call (the hook's latest value) with the first call's denoised."""
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        down, up = ancestral_step(s, s_next)
        if down == 0:
            x = d
        else:
            h = _lam(down) - _lam(s)
            s_mid = math.exp(-(_lam(s) + h / 2))
            x2 = (s_mid / s) * (x + (d - uncond())) - math.expm1(-h / 2) * d
            d2 = denoise(x2, s_mid)
            x = (down / s) * (x + (d - uncond())) - math.expm1(-h) * d2
        if s_next > 0:
            x = x + noise(s, s_next) * up
        step_done()
    return x


def dpmpp_2m_cfg_pp(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, *,
                    uncond: Uncond):
    old_u = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = denoise(x, s)
        u = uncond()
        if s_next == 0:
            x = d
        else:
            h = _lam(s_next) - _lam(s)
            mix = -math.exp(-h) * u
            if old_u is not None:
                r = (_lam(s) - _lam(sig[i - 1])) / h
                mix = mix - math.expm1(-h) * (1 / (2 * r)) * (d - old_u)
            x = d + mix + math.exp(-h) * x
        old_u = u
        step_done()
    return x


EXTRA_SAMPLERS: dict[str, Callable[..., Any]] = {
    "dpmpp_sde": dpmpp_sde,
    "dpmpp_sde_gpu": dpmpp_sde,
    "dpmpp_2m_sde_heun": dpmpp_2m_sde_heun,
    "dpmpp_2m_sde_heun_gpu": dpmpp_2m_sde_heun,
    "heunpp2": heunpp2,
    "ipndm": ipndm,
    "ipndm_v": partial(ipndm, variable=True),
    "res_multistep": res_multistep,
    "res_multistep_ancestral": res_multistep_ancestral,
    "gradient_estimation": gradient_estimation,
    "er_sde": er_sde,
    "seeds_2": seeds_2,
    "seeds_3": seeds_3,
    "sa_solver": sa_solver,
    "sa_solver_pece": partial(sa_solver, pece=True),
    "dpm_fast": dpm_fast,
    "dpm_adaptive": dpm_adaptive,
    "euler_cfg_pp": euler_cfg_pp,
    "euler_ancestral_cfg_pp": euler_ancestral_cfg_pp,
    "dpmpp_2s_ancestral_cfg_pp": dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_2m_cfg_pp": dpmpp_2m_cfg_pp,
    "res_multistep_cfg_pp": res_multistep_cfg_pp,
    "res_multistep_ancestral_cfg_pp": res_multistep_ancestral_cfg_pp,
    "gradient_estimation_cfg_pp": gradient_estimation_cfg_pp,
}
# Names whose ComfyUI noise is a Brownian tree (CPU for the plain names, the latent's device for *_gpu).
EXTRA_SDE_SAMPLERS: frozenset[str] = frozenset(
    {"dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu"})
