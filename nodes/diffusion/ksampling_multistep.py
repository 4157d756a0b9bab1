"""ComfyUI's multistep samplers that are not plain k-diffusion steps: lms, deis, uni_pc and uni_pc_bh2.

They walk the same sigma schedules as the samplers in ksampling, so every scheduler combines with them and a
seed gives ComfyUI's image. Their coefficients come from the schedule itself (an integral per step), and
ComfyUI computes several of them in float32 torch; the code below keeps those computations in float32 where
the rounding shows in the picture (UniPC's last step at sigma 0.001, DEIS's time conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Denoise = Callable[[Any, float], Any]
Noise = Callable[[float, float], Any]
StepDone = Callable[[], None]


# ---- lms: k-diffusion's linear multistep, coefficients by numerical integration ----

def _lms_coefficient(order: int, t, i: int, j: int) -> float:
    """The weight of the j-th last derivative: the integral over [t_i, t_i+1] of its Lagrange basis
    polynomial through the last `order` sigmas (scipy's quad, ComfyUI's tolerance)."""
    from scipy import integrate

    def basis(tau: float) -> float:
        prod = 1.0
        for k in range(order):
            if k != j:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


def lms(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, order: int = 4):
    try:
        import numpy as np
        import scipy.integrate  # noqa: F401
    except ImportError as exc:
        raise ValueError("sampler 'lms' needs scipy: pip install scipy (or use euler, dpmpp_2m ...)") from exc
    t = np.asarray(sig, dtype=np.float32)  # ComfyUI integrates over the float32 schedule
    derivatives: list[Any] = []
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        derivatives.append((x - d) / sig[i])
        if len(derivatives) > order:
            derivatives.pop(0)
        if sig[i + 1] == 0:
            x = d
        else:
            current = min(i + 1, order)
            weights = [_lms_coefficient(current, t, i, j) for j in range(current)]
            x = x + sum(w * dv for w, dv in zip(weights, reversed(derivatives), strict=False))
        step_done()
    return x


# ---- deis: DEIS "tab" coefficients over the VP time of an EDM-style sigma range ----

def _deis_times(sigmas, torch):
    """The VP-SDE time of each sigma for ComfyUI's fixed EDM range (0.002 to 80), with that SDE's beta_0 and
    beta_1; float32 as ComfyUI computes them."""
    eps_s = 1e-3
    smin, smax = torch.tensor(0.002), torch.tensor(80.0)
    beta_d = 2 * (torch.log(smin ** 2 + 1) / eps_s - torch.log(smax ** 2 + 1)) / (eps_s - 1)
    beta_min = torch.log(smax ** 2 + 1) - 0.5 * beta_d
    times = ((beta_min ** 2 + 2 * beta_d * (sigmas ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    return times, beta_min, beta_d + beta_min


def _deis_coefficients(times, i: int, order: int, beta_0, beta_1, torch, points: int = 10000) -> list:
    """The weights of the current and `order - 1` earlier derivatives for the step from times[i] to
    times[i+1]: the exponential integrator's integrand times each Lagrange basis polynomial, summed on a grid."""
    t_cur, t_next = times[i], times[i + 1]
    taus = torch.linspace(float(t_cur), float(t_next), points)
    dtau = (t_next - t_cur) / points
    alpha = torch.exp(-0.5 * taus ** 2 * (beta_1 - beta_0) - taus * beta_0)
    d_log_alpha = -(taus * (beta_1 - beta_0) + beta_0)
    integrand = -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))
    nodes = [times[i - k] for k in range(order)]
    weights = []
    for j in range(order):
        poly = 1
        for k in range(order):
            if k != j:
                poly = poly * (taus - nodes[k]) / (nodes[j] - nodes[k])
        weights.append(float(torch.sum(integrand * poly) * dtau))
    return weights


def deis(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, max_order: int = 3):
    import torch

    times, beta_0, beta_1 = _deis_times(torch.tensor(sig, dtype=torch.float32), torch)
    history: list[Any] = []  # earlier derivatives, newest last
    for i in range(len(sig) - 1):
        d = denoise(x, sig[i])
        d_cur = (x - d) / sig[i]
        order = 1 if sig[i + 1] <= 0 else min(max_order, i + 1)
        if order == 1:
            x = x + (sig[i + 1] - sig[i]) * d_cur
        else:
            weights = _deis_coefficients(times, i, order, beta_0, beta_1, torch)
            x = x + weights[0] * d_cur + sum(w * h for w, h in zip(weights[1:], reversed(history), strict=False))
        history.append(d_cur)
        if len(history) > max_order - 1:
            history.pop(0)
        step_done()
    return x


# ---- uni_pc / uni_pc_bh2: UniPC with B(h) = h or e^h - 1, data prediction, in VP space ----

class _VPTime:
    """ComfyUI's SigmaConvert: the VP quantities of a k-diffusion sigma, in float32 tensors."""

    def __init__(self, torch):
        self.torch = torch

    def log_alpha(self, s):
        return 0.5 * self.torch.log(1 / (s * s + 1))

    def alpha(self, s):
        return self.torch.exp(self.log_alpha(s))

    def std(self, s):
        return self.torch.sqrt(1.0 - self.torch.exp(2.0 * self.log_alpha(s)))

    def lam(self, s):
        log_alpha = self.log_alpha(s)
        return log_alpha - 0.5 * self.torch.log(1.0 - self.torch.exp(2.0 * log_alpha))


def _unipc_data(denoise: Denoise, vp: _VPTime, x, s):
    """The data prediction at VP-space x and sigma s, through the noise prediction as ComfyUI derives it."""
    scale = (s ** 2 + 1.0) ** 0.5
    k_in = x * scale
    eps = (k_in - denoise(k_in, float(s))) / s
    return (x - vp.std(s) * eps) / vp.alpha(s)


def _unipc_weights(rks, hh, order: int, variant: str, torch):
    """UniPC's linear system: R (powers of the step ratios) and b (phi functions over B(h))."""
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, rhs = [], []
    for i in range(1, order + 1):
        rows.append(torch.pow(rks, i - 1))
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return torch.stack(rows), torch.tensor(rhs), h_phi_1, b_h


def _unipc_update(denoise: Denoise, vp: _VPTime, x, models: list, times: list, t, order: int, variant: str,
                  use_corrector: bool, torch):
    """One UniPC step to sigma t: the predictor from the stored data predictions, then (unless it is the last
    step) the model at the predicted point and the corrector. Returns (x, model output at t or None)."""
    lam_prev, lam_t = vp.lam(times[-1]), vp.lam(t)
    model_prev = models[-1]
    h = lam_t - lam_prev
    rks, diffs = [], []
    for i in range(1, order):
        rk = (vp.lam(times[-(i + 1)]) - lam_prev) / h
        rks.append(rk)
        diffs.append((models[-(i + 1)] - model_prev) / rk)
    rks.append(torch.tensor(1.0))
    hh = -h
    r, b, h_phi_1, b_h = _unipc_weights(torch.stack(rks), hh, order, variant, torch)
    alpha_t = vp.alpha(t)
    x_base = (vp.std(t) / vp.std(times[-1])) * x - (alpha_t * h_phi_1) * model_prev
    stacked = torch.stack(diffs, dim=1) if diffs else None
    if stacked is not None:
        rhos_p = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(r[:-1, :-1], b[:-1])
        x_t = x_base - alpha_t * b_h * torch.tensordot(stacked, rhos_p.to(stacked), dims=([1], [0]))
    else:
        x_t = x_base
    if not use_corrector:
        return x_t, None
    rhos_c = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(r, b)
    model_t = _unipc_data(denoise, vp, x_t, t)
    correction = (torch.tensordot(stacked, rhos_c[:-1].to(stacked), dims=([1], [0]))
                  if stacked is not None else 0)
    return x_base - alpha_t * b_h * (correction + rhos_c[-1].to(model_t) * (model_t - model_prev)), model_t


def uni_pc(denoise: Denoise, x, sig: list[float], noise: Noise, step_done: StepDone, variant: str = "bh1"):
    """ComfyUI's sample_unipc: multistep UniPC of order up to 3 (lower at the start and the end) in VP space;
    a schedule ending at 0 ends at sigma 0.001 instead, as ComfyUI's does. One step runs no update at all
    (ComfyUI's order is then 0), so it returns the noised input."""
    import torch

    times = torch.tensor(sig, dtype=torch.float32)
    if sig[-1] == 0:
        times[-1] = 0.001
    vp = _VPTime(torch)
    steps = len(sig) - 1
    order = min(3, len(sig) - 2)
    x = x / torch.sqrt(1.0 + times[0] ** 2.0)
    models: list[Any] = []
    prev: list[Any] = []
    for index in range(steps):
        if index == 0:
            models, prev = [_unipc_data(denoise, vp, x, times[0])], [times[0]]
        elif index < order:
            x, model_x = _unipc_update(denoise, vp, x, models, prev, times[index], index, variant, True, torch)
            models.append(model_x if model_x is not None else _unipc_data(denoise, vp, x, times[index]))
            prev.append(times[index])
        else:
            for step in range(index, index + 1 + (1 if index == steps - 1 else 0)):
                step_order = min(order, steps + 1 - step)
                last = step == steps
                x, model_x = _unipc_update(denoise, vp, x, models, prev, times[step], step_order, variant,
                                           not last, torch)
                models, prev = models[1:] + models[-1:], prev[1:] + [times[step]]
                if not last:
                    models[-1] = model_x if model_x is not None else _unipc_data(denoise, vp, x, times[step])
        step_done()
    return x / vp.alpha(times[-1])


MULTISTEP_SAMPLERS: dict[str, Callable[..., Any]] = {
    "lms": lms,
    "deis": deis,
    "uni_pc": uni_pc,
    "uni_pc_bh2": lambda denoise, x, sig, noise, step_done: uni_pc(denoise, x, sig, noise, step_done, "bh2"),
}
