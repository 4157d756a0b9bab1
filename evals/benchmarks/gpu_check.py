"""One-shot GPU check of the diffusion nodes: what only a real accelerator can show, in one short run.

Steps (each wrapped, so one failure does not stop the others; a global time budget skips what no longer fits):
  env         torch/CUDA versions, the device, the library versions in use
  tests       our diffusion tests (pytest in a subprocess) with NODEWEAVER_DEVICE set to the device; tests that
              fail there are rerun on the CPU, to tell device-specific failures from environment ones
  controlnet  a tiny SD1 checkpoint and ControlNet through CLIPTextEncode, ControlNetApplyAdvanced, KSampler and
              VAEDecode in float16 on the device, compared with the same seed in float32 on the CPU
  samplers    every KSampler sampler (karras) and scheduler (euler) through the node in fp16 on the device,
              against fp32 on the CPU: finite, and close for the samplers that draw no device noise
  upscale     a spandrel ESRGAN (Real-ESRGAN's 23-block size, random weights) 4x on a 2048x2048 image in 512
              tiles: time, peak GPU memory; tiled against one pass on a smaller image; on CUDA, a memory cap
              that makes the 512 tile run out of memory, to see the tile halved on a real CUDA OOM
  bench       evals/benchmarks/diffusion.py's comparison (NodeWeaver's sampler + VAEDecode against diffusers'
              StableDiffusionPipeline on the same modules) on comfyui_parity.build_checkpoint's full SD1.5
              single file (random weights), loaded by our single-file loader: 512x512, 20 steps, fp16

Prints PASS/FAIL/SKIP/ERROR per step with its numbers and writes all results as JSON to --out (rewritten after
every step, so a run cut short still leaves what it measured).

    python -m evals.benchmarks.gpu_check --device cuda --out /tmp/gpu_check.json
    python -m evals.benchmarks.gpu_check --device cpu --quick --out /tmp/gpu_check.json   # tiny sizes, no SD1.5

On a machine that has torch (and transformers, safetensors, numpy, scipy, pillow, einops, pytest) but not the
rest, gpu_check.sh installs wheels carried in .whl/ (untracked) first. Everything this check imports beyond
those: diffusers, spandrel, torchsde + trampoline, kornia + kornia_rs (Canny), pydantic + pydantic_core +
annotated_types + typing_inspection + typing_extensions, pydantic_settings + python-dotenv (runtime.settings),
rapidfuzz (the node registry), hypothesis + sortedcontainers (tests/conftest.py), and requests + urllib3 +
charset_normalizer (diffusers checks that requests is installed when it is imported).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# the diffusion tests that run nodes on a device (those of them present in this checkout are run)
TEST_FILES = ("tests/test_controlnet.py", "tests/test_upscale_models.py", "tests/test_inpaint.py",
              "tests/test_masks.py", "tests/test_diffusion.py", "tests/test_sampling_parity.py",
              "tests/test_ksampling_extra.py", "tests/test_tokenizer_vocab.py")
PACKAGES = ("torch", "diffusers", "transformers", "tokenizers", "huggingface_hub", "safetensors", "numpy", "scipy",
            "pillow", "spandrel", "einops", "torchsde", "pydantic", "pydantic_core", "pydantic_settings",
            "hypothesis", "pytest", "pytest_timeout", "accelerate", "typing_extensions", "kornia", "kornia_rs",
            "rapidfuzz", "requests")
NOT_PRINTED = {"status", "traceback", "failure_messages", "skipped", "hard_coded_cpu", "tail"}
CN_REL_TOL = 0.02  # fp16 on the device against fp32 on the CPU: mean |diff| / mean |cpu latent|
SAMPLER_REL_TOL = 0.05  # the same, after 8 steps of any deterministic sampler
# samplers whose per-step noise comes from a generator on the latent's device (ComfyUI's default noise
# sampler, or the *_gpu Brownian trees): other noise on a GPU than on the CPU, in ComfyUI as here
DEVICE_NOISE = frozenset({"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "ddpm", "lcm",
                          "euler_ancestral_cfg_pp", "dpmpp_2s_ancestral_cfg_pp", "res_multistep_ancestral",
                          "res_multistep_ancestral_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver",
                          "sa_solver_pece"})


class Check:
    """The run's state: arguments, time budget, results, and the JSON written after every step."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device: str = args.device
        self.quick: bool = args.quick
        self.start = time.monotonic()
        self.tmp = Path(tempfile.mkdtemp(prefix="nw-gpu-check-", dir=args.tmp))
        self.out = Path(args.out)
        self.logs = self.out.parent
        self.results: dict[str, Any] = {"meta": {"argv": sys.argv[1:], "device": self.device, "quick": self.quick,
                                                 "budget_s": args.budget, "tmp": str(self.tmp)}, "steps": {}}

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.start)

    def write(self) -> None:
        self.results["meta"]["elapsed_s"] = round(time.monotonic() - self.start, 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=1, default=str), encoding="utf-8")

    def step(self, name: str, fn: Callable[[Check], dict[str, Any]], needs_s: float) -> None:
        """Run one step unless the budget no longer holds `needs_s` seconds; record and print its outcome."""
        if self.left() < needs_s:
            record: dict[str, Any] = {"status": "SKIP", "why": f"{self.left():.0f} s left, needs ~{needs_s:.0f} s"}
        elif self.results["steps"].get("env", {}).get("status") == "FAIL" and name != "env":
            record = {"status": "SKIP", "why": f"the {self.device} device is not usable (see env)"}
        else:
            began = time.monotonic()
            print(f"---- {name} ({self.left():.0f} s of budget left)", flush=True)
            try:
                record = fn(self)
                record["status"] = "PASS" if record.pop("ok") else "FAIL"
            except Exception as exc:  # a step's failure is a result, not the end of the run
                record = {"status": "ERROR", "error": f"{type(exc).__name__}: {exc}"[:2000],
                          "traceback": traceback.format_exc()[-4000:]}
            record["seconds"] = round(time.monotonic() - began, 2)
            _free_memory()
        self.results["steps"][name] = record
        self.write()
        numbers = {k: v for k, v in record.items() if k not in NOT_PRINTED and _short(v)}
        print(f"[{record['status']}] {name}: {json.dumps(numbers, default=str)[:1500]}", flush=True)


def _short(value: Any) -> bool:
    """Worth a place on the printed line: scalars, short lists, small dicts of those."""
    if isinstance(value, dict):
        return len(value) <= 12 and all(_short(v) for v in value.values())
    return isinstance(value, int | float | str | bool) or (isinstance(value, list | tuple) and len(value) <= 8)


def _free_memory() -> None:
    """Drop the models cached by a step and give their GPU memory back (runtime.models.ModelCache.free)."""
    from runtime.models import model_cache

    model_cache.free()


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _diff(a: Any, b: Any) -> dict[str, float]:
    """max and mean |a - b|, and the mean relative to mean |b|."""
    d = (a.float().cpu() - b.float().cpu()).abs()
    scale = float(b.float().abs().mean()) or 1.0
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "mean_rel": float(d.mean()) / scale}


# ---- 1. environment ----------------------------------------------------------------------------------------
def check_env(ctx: Check) -> dict[str, Any]:
    from importlib import metadata

    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                            "packages": versions, "cpu_threads": torch.get_num_threads()}
    if ctx.device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2 ** 30, 1), cudnn=torch.backends.cudnn.version(),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
        info["ok"] = True
    else:
        info["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
        info["ok"] = ctx.device.startswith("cpu")
    return info


# ---- 2. our tests on the device ----------------------------------------------------------------------------
def _pytest(ctx: Check, device: str, targets: list[str], tag: str, limit: float) -> dict[str, Any]:
    """pytest in a subprocess with NODEWEAVER_DEVICE=device; outcomes from the junit XML, else from -v lines."""
    from importlib.util import find_spec

    xml = ctx.tmp / f"junit-{tag}.xml"
    log = ctx.logs / f"gpu_check_tests_{re.sub(r'[^A-Za-z0-9_.-]', '_', tag)}.log"
    # -o addopts=: the project's -q would cancel -v, whose per-test lines are the outcomes if the run is killed
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-v", "--tb=short", "-rfE",
           f"--junitxml={xml}", *targets]
    if find_spec("pytest_timeout") is not None:
        cmd.insert(5, "--timeout=120")
    env = {**os.environ, "NODEWEAVER_DEVICE": device, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    began = time.monotonic()
    with open(log, "w", encoding="utf-8") as handle:
        try:
            rc: int | str = subprocess.run(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                           timeout=limit).returncode
        except subprocess.TimeoutExpired:
            rc = f"killed after {limit:.0f} s"
    text = log.read_text(encoding="utf-8", errors="replace")
    outcomes = _junit_outcomes(xml) if xml.is_file() else _verbose_outcomes(text)
    counts = {k: sum(1 for v in outcomes.values() if v["outcome"] == k)
              for k in ("passed", "failed", "error", "skipped")}
    return {"rc": rc, "seconds": round(time.monotonic() - began, 1), "counts": counts, "outcomes": outcomes,
            "log": str(log), "tail": text[-3000:]}


def _junit_outcomes(xml: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        module, name = case.get("classname", ""), case.get("name", "")
        # a module that failed or skipped at collection has no class name: its name is the module's
        node = f"{module.replace('.', '/')}.py::{name}" if module else f"{name.replace('.', '/')}.py"
        outcome, message = "passed", ""
        for tag, kind in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            found = case.find(tag)
            if found is not None:
                outcome = kind
                message = " | ".join(t.strip() for t in (found.get("message"), found.text) if t and t.strip())
                message = message[:600]
                break
        out[node] = {"outcome": outcome, "message": message}
    return out


def _verbose_outcomes(text: str) -> dict[str, dict[str, str]]:
    out = {}
    for match in re.finditer(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", text, re.M):
        out[match.group(1)] = {"outcome": match.group(2).lower(), "message": ""}
    return out


def _hard_coded_cpu() -> list[str]:
    """Lines of the test files that name the CPU device themselves (they stay on the CPU whatever the device)."""
    found = []
    for name in (f for f in TEST_FILES if (REPO / f).is_file()):
        for number, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"""["']cpu["']""", line):
                found.append(f"{name}:{number}: {line.strip()[:100]}")
    return found


def check_tests(ctx: Check) -> dict[str, Any]:
    limit = max(30.0, min(ctx.args.tests_limit, ctx.left() - ctx.args.reserve))
    main = _pytest(ctx, ctx.device, [f for f in TEST_FILES if (REPO / f).is_file()], ctx.device, limit)
    bad = sorted(n for n, v in main["outcomes"].items() if v["outcome"] in ("failed", "error"))
    record: dict[str, Any] = {"rc": main["rc"], "counts": main["counts"], "pytest_seconds": main["seconds"],
                              "failed": bad, "failure_messages": {n: main["outcomes"][n]["message"] for n in bad},
                              "skipped": {n: v["message"] for n, v in main["outcomes"].items()
                                          if v["outcome"] == "skipped"},
                              "hard_coded_cpu": _hard_coded_cpu(), "log": main["log"]}
    if not main["outcomes"]:
        record["tail"] = main["tail"]
    if bad and ctx.device != "cpu" and ctx.left() > ctx.args.reserve + 20:
        again = _pytest(ctx, "cpu", bad, "cpu-rerun", max(20.0, min(60.0, ctx.left() - ctx.args.reserve)))
        cpu_bad = {n for n, v in again["outcomes"].items() if v["outcome"] in ("failed", "error")}
        record["cpu_rerun"] = {"counts": again["counts"], "log": again["log"],
                               "fail_on_cpu_too": sorted(cpu_bad),
                               "device_only": sorted(n for n in bad if n in again["outcomes"] and n not in cpu_bad)}
    # a whole module skipped means a missing package (pytest.importorskip), not a test that chose to skip
    record["module_skips"] = sorted(n for n, v in main["outcomes"].items() if v["outcome"] == "skipped" and "::" not in n)
    record["ok"] = bool(main["outcomes"]) and not bad and not record["module_skips"] and main["rc"] == 0
    return record


# ---- 3. ControlNet + KSampler in float16 -------------------------------------------------------------------
def write_tiny_controlnet(folder: Path, seed: int = 3) -> Path:
    """A diffusers ControlNetModel from the tiny UNet, its zero convolutions given random weights so it acts."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    from nodes.diffusion.tiny import UNET_CONFIG

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(UNet2DConditionModel(**UNET_CONFIG))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    net.save_pretrained(str(folder))
    return folder


def _controlnet_run(ckpt: Path, net_dir: Path, device: str, size: int, steps: int,
                    reference: bool = False) -> dict[str, Any]:
    """Text → ControlNetApplyAdvanced → KSampler (euler, dpmpp_2m) → VAEDecode on one device, via the nodes;
    a reference run (the CPU's) skips the runs without control and the repeat."""
    import torch

    from nodes.diffusion.controlnet import ControlNet, ControlNetApplyAdvanced, load_controlnet_model
    from nodes.diffusion.image_nodes import VAEDecode
    from nodes.diffusion.models import load_single_file
    from nodes.diffusion.nodes import CLIPTextEncode, KSampler

    model, clip, vae = load_single_file(ckpt, device)
    net = ControlNet(load_controlnet_model(net_dir, device))
    positive = CLIPTextEncode().encode(clip, "a red fox in the snow")[0]
    negative = CLIPTextEncode().encode(clip, "blurry, watermark")[0]
    hint = torch.rand(1, size * 8, size * 8, 3, generator=torch.Generator().manual_seed(5))
    cpos, cneg = ControlNetApplyAdvanced().apply_controlnet(positive, negative, net, hint, 1.0, 0.0, 1.0)
    latent = {"samples": torch.zeros(1, 4, size, size)}
    out: dict[str, Any] = {"unet_dtype": str(model.dtype), "controlnet_dtype": str(net.weights.dtype),
                           "controlnet_device": str(next(net.weights.model.parameters()).device)}
    for sampler in ("euler", "dpmpp_2m"):
        _sync(device)
        began = time.perf_counter()
        controlled = KSampler().sample(model, 7, steps, 6.0, sampler, "normal", cpos, cneg, latent)[0]["samples"]
        _sync(device)
        out[f"{sampler}_seconds"] = round(time.perf_counter() - began, 3)
        out[sampler] = controlled.float().cpu()
        if reference:
            continue
        out[f"{sampler}_plain"] = KSampler().sample(model, 7, steps, 6.0, sampler, "normal", positive, negative,
                                                    latent)[0]["samples"].float().cpu()
    if not reference:
        again = KSampler().sample(model, 7, steps, 6.0, "euler", "normal", cpos, cneg, latent)[0]["samples"]
        out["repeat_run_identical"] = bool(torch.equal(again.float().cpu(), out["euler"]))  # info: determinism
    out["image"] = VAEDecode().decode(vae, {"samples": out["euler"]})[0].float().cpu()
    del model, clip, vae, net
    return out


def check_controlnet(ctx: Check) -> dict[str, Any]:
    from nodes.diffusion.tiny import write_tiny_checkpoint

    root = ctx.tmp / "cn-models"
    ckpt = write_tiny_checkpoint(root, diffusers_folder=False)["single_file"]
    net_dir = write_tiny_controlnet(root / "controlnet" / "tiny-cn")
    size, steps = (8, 4) if ctx.quick else (32, 10)
    runs = {ctx.device: _controlnet_run(ckpt, net_dir, ctx.device, size, steps)}
    if ctx.device != "cpu":
        runs["cpu"] = _controlnet_run(ckpt, net_dir, "cpu", size, steps, reference=True)
    dev = runs[ctx.device]
    record: dict[str, Any] = {"latent": [1, 4, size, size], "steps": steps, "tolerance_mean_rel": CN_REL_TOL}
    record.update({k: v for k, v in dev.items() if not hasattr(v, "shape")})
    ok = True
    for sampler in ("euler", "dpmpp_2m"):
        out = dev[sampler]
        finite = bool(out.isfinite().all())
        effect = _diff(out, dev[f"{sampler}_plain"])["mean_rel"]  # the control changes the result
        record[f"{sampler}_finite"], record[f"{sampler}_control_effect_rel"] = finite, round(effect, 5)
        ok &= finite and tuple(out.shape) == (1, 4, size, size) and effect > 1e-3
        if "cpu" in runs and ctx.device != "cpu":
            diff = _diff(out, runs["cpu"][sampler])
            record[f"{sampler}_vs_cpu_fp32"] = {k: round(v, 6) for k, v in diff.items()}
            ok &= diff["mean_rel"] <= CN_REL_TOL
    image = dev["image"]
    record["image_shape"] = list(image.shape)
    ok &= tuple(image.shape) == (1, size * 8, size * 8, 3) and bool(image.isfinite().all())
    if "cpu" in runs and ctx.device != "cpu":
        record["image_vs_cpu_fp32"] = {k: round(v, 6) for k, v in _diff(image, runs["cpu"]["image"]).items()}
    record["ok"] = ok
    return record


# ---- 3b. every sampler on the device --------------------------------------------------------------------------
def check_samplers(ctx: Check) -> dict[str, Any]:
    """Each of KSampler's samplers (karras) and each scheduler (euler) through the node on the device in fp16,
    against the CPU in fp32: finite, and close except where the noise is drawn on the device (DEVICE_NOISE)."""
    import torch

    from nodes.diffusion.models import load_single_file
    from nodes.diffusion.nodes import CLIPTextEncode, KSampler
    from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS
    from nodes.diffusion.tiny import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(ctx.tmp / "sampler-models", diffusers_folder=False)["single_file"]
    pairs = [(name, "karras") for name in SAMPLERS] + [("euler", name) for name in SCHEDULERS if name != "karras"]
    results: dict[str, dict[tuple[str, str], Any]] = {}
    for device in (ctx.device, "cpu") if ctx.device != "cpu" else ("cpu",):
        model, clip, _ = load_single_file(ckpt, device)
        positive = CLIPTextEncode().encode(clip, "a red fox in the snow")[0]
        negative = CLIPTextEncode().encode(clip, "blurry")[0]
        latent = {"samples": torch.zeros(1, 4, 16, 16)}
        results[device] = {pair: KSampler().sample(model, 11, 8, 5.0, pair[0], pair[1], positive, negative,
                                                   latent)[0]["samples"].float().cpu() for pair in pairs}
    dev = results[ctx.device]
    bad = [f"{a}/{b}" for (a, b), out in dev.items() if not bool(out.isfinite().all())]
    record: dict[str, Any] = {"pairs": len(pairs), "not_finite": bad, "steps": 8}
    ok = not bad
    if ctx.device != "cpu":
        diffs = {f"{a}/{b}": round(_diff(out, results["cpu"][(a, b)])["mean_rel"], 5) for (a, b), out in dev.items()}
        far = {k: v for k, v in diffs.items() if v > SAMPLER_REL_TOL and k.split("/")[0] not in DEVICE_NOISE
               and not k.split("/")[0].endswith("_gpu")}
        record.update(worst=sorted(diffs.items(), key=lambda kv: -kv[1])[:8], over_tolerance=far,
                      tolerance_mean_rel=SAMPLER_REL_TOL)
        ok &= not far
    record["ok"] = ok
    return record


# ---- 4. upscale models -------------------------------------------------------------------------------------
def esrgan_state(nf: int, gc: int, blocks: int, seed: int = 0, noise: float = 0.3) -> dict[str, Any]:
    """A 4x RRDBNet (Real-ESRGAN key names) whose main path is a nearest-neighbour 4x upscale plus random
    weights of std noise/sqrt(fan_in) everywhere (noise 0: exactly nearest)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}

    def conv(name: str, out_c: int, in_c: int, ident: bool = False) -> None:
        weight = torch.randn(out_c, in_c, 3, 3, generator=gen) * (noise / (in_c * 9) ** 0.5)
        if ident:
            for c in range(min(out_c, in_c)):
                weight[c, c, 1, 1] += 1.0
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, torch.zeros(out_c)

    conv("conv_first", nf, 3, True)
    for b in range(blocks):
        for r in range(1, 4):
            for k in range(1, 6):
                conv(f"body.{b}.rdb{r}.conv{k}", nf if k == 5 else gc, nf + (k - 1) * gc)
    conv("conv_body", nf, nf)
    for name in ("conv_up1", "conv_up2", "conv_hr"):
        conv(name, nf, nf, True)
    conv("conv_last", 3, nf, True)
    return state


def _upscale_timed(descriptor: Any, image: Any, device: str, tile: int, overlap: int) -> tuple[Any, float, int]:
    import torch

    from nodes.diffusion import upscale_models as um

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    out = um.upscale_image(descriptor, image, tile=tile, overlap=overlap)
    _sync(device)
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    return out, time.perf_counter() - began, peak


def check_upscale(ctx: Check) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    from nodes.diffusion import upscale_models as um
    from runtime.models import model_bytes

    folder = ctx.tmp / "up-models" / "upscale_models"
    folder.mkdir(parents=True)
    # 23 blocks of (64, 32): RealESRGAN_x4plus's size; noise 0.05 keeps its output following the picture
    nf, gc, blocks, noise = (16, 32, 1, 0.3) if ctx.quick else (64, 32, 23, 0.05)
    save_file(esrgan_state(nf, gc, blocks, seed=1, noise=noise), str(folder / "esrgan-x4.safetensors"))
    os.environ["NODEWEAVER_MODELS_DIR"] = str(folder.parent)
    (descriptor,) = um.UpscaleModelLoader().load_model("esrgan-x4.safetensors")
    side = 128 if ctx.quick else 2048
    tile, overlap = (48, 8) if ctx.quick else (um.TILE, um.OVERLAP)
    big = torch.rand(1, side, side, 3, generator=torch.Generator().manual_seed(0))
    out, seconds, peak = _upscale_timed(descriptor, big, ctx.device, tile, overlap)
    record: dict[str, Any] = {
        "model": f"RRDBNet nf={nf} gc={gc} blocks={blocks} ({model_bytes(descriptor.model) / 2 ** 20:.1f} MiB)",
        "spandrel_arch": descriptor.architecture.id, "scale": descriptor.scale, "input": [1, side, side, 3],
        "tile": tile, "overlap": overlap, "tiles": um.tile_count(side, side, tile, overlap),
        "output_shape": list(out.shape), "upscale_seconds": round(seconds, 3),
        "megapixels_out_per_s": round(out.shape[1] * out.shape[2] / seconds / 1e6, 2),
        "peak_gpu_mib": round(peak / 2 ** 20, 1), "finite": bool(out.isfinite().all())}
    ok = tuple(out.shape) == (1, side * 4, side * 4, 3) and record["finite"]
    del out, big
    small = torch.rand(1, 200, 264, 3, generator=torch.Generator().manual_seed(4))
    whole, _, _ = _upscale_timed(descriptor, small, ctx.device, 512, 32)  # one pass: fits one tile
    small_tile = 64 if ctx.quick else 128
    tiled, _, _ = _upscale_timed(descriptor, small, ctx.device, small_tile, 16)
    diff = _diff(tiled, whole)
    record["tiled_vs_whole"] = {"image": [200, 264], "tile": small_tile, "overlap": 16,
                                "tiles": um.tile_count(264, 200, small_tile, 16),
                                **{k: round(v, 6) for k, v in diff.items()}}
    ok &= tiled.shape == whole.shape and diff["mean_abs"] <= 0.01
    if ctx.device.startswith("cuda") and not ctx.quick:
        try:
            record["oom_halving"] = _oom_halving(descriptor, peak)
        except Exception as exc:  # informational: it must not cost the numbers above
            record["oom_halving"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    record["ok"] = bool(ok)
    return record


def _oom_halving(descriptor: Any, peak_512: int) -> dict[str, Any]:
    """Cap the process's GPU memory between a 256 and a 512 tile's need; the node must halve its tile on
    the real CUDA out-of-memory error and finish. Informational: allocator behaviour decides where the cap
    lands, so this does not decide the step's PASS."""
    import torch

    from nodes.diffusion import upscale_models as um
    from runtime.models import model_bytes

    tiles: list[int] = []
    real = um.tiled_scale

    def recording(images: Any, function: Any, *, tile: int, **kwargs: Any) -> Any:
        tiles.append(tile)
        return real(images, function, tile=tile, **kwargs)

    _free_memory()
    base = torch.cuda.memory_allocated() + model_bytes(descriptor.model)
    cap = base + max(0, peak_512 - base) * 0.45
    total = torch.cuda.get_device_properties(0).total_memory
    image = torch.rand(1, 1024, 1024, 3, generator=torch.Generator().manual_seed(6))
    um.tiled_scale = recording
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    try:
        out = um.upscale_image(descriptor, image)
        result: dict[str, Any] = {"finished": True, "output_shape": list(out.shape)}
    except Exception as exc:
        result = {"finished": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        um.tiled_scale = real
        _free_memory()
    result.update(cap_mib=round(cap / 2 ** 20), peak_512_mib=round(peak_512 / 2 ** 20), tiles_tried=tiles,
                  halved=len(tiles) > 1 and tiles[0] == um.TILE)
    return result


# ---- 5. the diffusion benchmark ----------------------------------------------------------------------------
def _bench_checkpoint(ctx: Check) -> tuple[Path, int, int, int, str]:
    """The single file to load: comfyui_parity's full SD1.5 (random weights), or the tiny one with --quick."""
    if ctx.quick:
        from nodes.diffusion.tiny import write_tiny_checkpoint

        ckpt = write_tiny_checkpoint(ctx.tmp / "bench", diffusers_folder=False)["single_file"]
        return ckpt, 64, 4, 1, "tiny SD1 architecture"
    from evals.benchmarks.comfyui_parity import build_checkpoint

    began = time.perf_counter()
    ckpt = build_checkpoint(ctx.tmp / "bench" / "checkpoints" / "sd15-random.safetensors")
    print(f"     built {ckpt.name} ({ckpt.stat().st_size / 2 ** 30:.2f} GiB) in {time.perf_counter() - began:.0f} s",
          flush=True)
    return ckpt, ctx.args.res, ctx.args.steps, ctx.args.repeat, "SD1.5 architecture"


def _bench_runners(model: Any, clip: Any, vae: Any, pipe: Any, res: int, steps: int, cfg: float):
    """diffusion.py's two paths: our nodes' sampler + VAEDecode, and the pipeline (same seed, same modules)."""
    import torch

    from evals.benchmarks.diffusion import ours

    prompt, negative = "a red fox in the snow", "blurry, watermark"

    def run_ours() -> Any:
        return ours(model, clip, vae, prompt, negative, res, steps, cfg, 1)

    def pipe_call(output_type: str) -> Any:
        generator = torch.Generator("cpu").manual_seed(1)
        return pipe(prompt, negative_prompt=negative, height=res, width=res, num_inference_steps=steps,
                    guidance_scale=cfg, generator=generator, output_type=output_type).images

    def run_pipe() -> Any:
        """The pipeline's latents decoded by the same float32 VAE our VAEDecode uses (see pipeline_as_is)."""
        latents = pipe_call("latent")
        with torch.no_grad():
            image = vae.vae.decode(latents.to(vae.dtype) / vae.scaling_factor).sample
        return (image / 2 + 0.5).clamp(0, 1).movedim(1, -1)

    return run_ours, run_pipe, pipe_call


def check_bench(ctx: Check) -> dict[str, Any]:
    from evals.benchmarks.diffusion import pipeline_for, timed
    from nodes.diffusion.models import load_single_file

    ckpt, res, steps, repeat, what = _bench_checkpoint(ctx)
    os.environ["NODEWEAVER_MODELS_DIR"] = str(ctx.tmp / "bench")  # CLIP's vocabulary is written under it
    began = time.perf_counter()
    model, clip, vae = load_single_file(ckpt, ctx.device)
    record: dict[str, Any] = {"model": what, "checkpoint_gib": round(ckpt.stat().st_size / 2 ** 30, 3),
                              "load_seconds": round(time.perf_counter() - began, 1), "unet_dtype": str(model.dtype),
                              "vae_dtype": str(vae.dtype), "res": res, "steps": steps, "cfg": 7.5,
                              "sampler": "euler/normal"}
    run_ours, run_pipe, pipe_call = _bench_runners(model, clip, vae, pipeline_for(model, clip, vae), res, steps,
                                                   7.5)
    try:  # diffusion.py's own call: output_type="pt" has the pipeline decode its latents with our VAE as it is
        pipe_call("pt")
        record["pipeline_as_is"] = "ran"
    except Exception as exc:
        record["pipeline_as_is"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    first_ours, first_pipe = run_ours(), run_pipe()  # warm-up: kernels, allocator
    record["ours_vs_pipeline_image"] = {k: round(v, 5) for k, v in _diff(first_ours, first_pipe).items()}
    repeat = repeat if ctx.left() > 60 else 1
    ours_s, ours_peak = timed(run_ours, repeat, ctx.device)
    pipe_s, pipe_peak = timed(run_pipe, repeat, ctx.device)
    record.update(repeat=repeat, ours_seconds=round(ours_s, 3), pipeline_seconds=round(pipe_s, 3),
                  speed_ratio_ours_over_pipeline=round(pipe_s / ours_s, 3),
                  ours_peak_mib=round(ours_peak / 2 ** 20) if ours_peak else None,
                  pipeline_peak_mib=round(pipe_peak / 2 ** 20) if pipe_peak else None,
                  ours_finite=bool(first_ours.isfinite().all()), pipeline_finite=bool(first_pipe.isfinite().all()))
    record["ok"] = record["ours_finite"] and record["pipeline_finite"] and \
        tuple(first_ours.shape) == (1, res, res, 3) and math.isfinite(pipe_s / ours_s)
    if not ctx.quick:
        ckpt.unlink(missing_ok=True)  # 2 GB of /tmp
    return record


# ---- driver ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--out", default="gpu_check.json", help="where the JSON results go")
    parser.add_argument("--quick", action="store_true", help="tiny sizes everywhere, no SD1.5 checkpoint")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for the whole run")
    parser.add_argument("--reserve", type=float, default=170.0,
                        help="seconds the tests step leaves for the steps after it")
    parser.add_argument("--tests-limit", type=float, default=150.0, help="most seconds for the test run")
    parser.add_argument("--res", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="run only these steps")
    parser.add_argument("--tmp", default=None, help="folder for the temporary models (default: the system's)")
    return parser.parse_args(argv)


STEPS: tuple[tuple[str, Callable[[Check], dict[str, Any]], float], ...] = (
    ("env", check_env, 0), ("tests", check_tests, 60), ("controlnet", check_controlnet, 20),
    ("samplers", check_samplers, 30), ("upscale", check_upscale, 30), ("bench", check_bench, 90))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.budget, args.reserve = max(args.budget, 600.0), min(args.reserve, 60.0)
    faulthandler.dump_traceback_later(args.budget + 90, exit=True)  # the last guard: a hang ends the run
    ctx = Check(args)
    for name in ("MODELS", "INPUT", "OUTPUT", "DATA"):  # nothing of a user's setup takes part
        os.environ[f"NODEWEAVER_{name}_DIR"] = str(ctx.tmp / name.lower())
    os.environ["NODEWEAVER_CONFIG"] = str(ctx.tmp / "no-config.toml")
    os.environ["NODEWEAVER_DEVICE"] = args.device
    from nodes.diffusion.models import quiet_libraries

    quiet_libraries()
    for name, fn, needs in STEPS:
        if args.only is None or name in args.only:
            ctx.step(name, fn, needs)
    statuses = {name: record["status"] for name, record in ctx.results["steps"].items()}
    ctx.results["summary"] = statuses
    ctx.write()
    print("==== summary: " + ", ".join(f"{k} {v}" for k, v in statuses.items()) +
          f" ({time.monotonic() - ctx.start:.0f} s); results in {ctx.out}", flush=True)
    faulthandler.cancel_dump_traceback_later()
    return 0 if all(v == "PASS" for v in statuses.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
