"""Sampling as ComfyUI samples: its noise (initial, ancestral, Brownian), prompt weights and embeddings,
SD2 v-prediction detection, Kohya SDXL LoRA names and CLIPSetLastLayer, on tiny random-weight models.

The references below re-implement ComfyUI v0.3.64's algorithms from its source (comfy/sample.py
prepare_noise, comfy/k_diffusion/sampling.py default_noise_sampler and BrownianTreeNoiseSampler,
comfy/sd1_clip.py token weights); ComfyUI itself is not imported.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from nodes.diffusion.ksampling import (  # noqa: E402
    BrownianTreeNoiseSampler,
    SigmaTable,
    noise_sampler_for,
    prepare_noise,
    run_sampler,
    schedule,
    training_sigmas,
)
from nodes.diffusion.models import load_checkpoint  # noqa: E402
from nodes.diffusion.sampling import sample  # noqa: E402
from nodes.diffusion.tiny import SCHEDULER, write_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny SD1.x checkpoint loaded through the single-file loader (model, clip, vae)."""
    root = tmp_path_factory.mktemp("models")
    paths = write_tiny_checkpoint(root, diffusers_folder=False)
    return load_checkpoint(paths["single_file"])


# ---- reference implementations of ComfyUI's noise, from its source ----

def ref_prepare_noise(shape, seed: int):
    generator = torch.manual_seed(seed)
    return torch.randn(shape, dtype=torch.float32, generator=generator, device="cpu")


def ref_default_noise(x, seed: int, draws: int) -> list:
    generator = torch.Generator(device=x.device)
    generator.manual_seed(seed)
    return [torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)
            for _ in range(draws)]


def ref_brownian_noise(x, sigmas, seed: int) -> list:
    """BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, cpu=True) called at each step."""
    import torchsde

    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
    t0, t1, tree_sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
    tree = torchsde.BrownianTree(t0.cpu(), torch.zeros_like(x).cpu(), t1.cpu(), entropy=seed)
    out = []
    for i in range(len(sigmas) - 2):  # the last step (to sigma 0) draws no noise
        a, b = torch.as_tensor(sigmas[i]), torch.as_tensor(sigmas[i + 1])
        low, high, sign = (a, b, 1) if a < b else (b, a, -1)
        w = tree(low.cpu().float(), high.cpu().float()).to(x.dtype) * (tree_sign * sign)
        out.append(w / (b - a).abs().sqrt())
    return out


def test_initial_noise_is_comfyuis_prepare_noise_for_any_seed():
    for seed in (0, 7, 2 ** 63 + 5, 2 ** 64 - 1):
        ours = prepare_noise((2, 4, 6, 5), seed)
        assert torch.equal(ours, ref_prepare_noise((2, 4, 6, 5), seed)), seed
    # a rebatched latent: item i keeps the noise of the i-th one-item draw
    generator = torch.manual_seed(3)
    singles = [torch.randn((1, 4, 6, 5), generator=generator) for _ in range(4)]
    picked = prepare_noise((3, 4, 6, 5), 3, [3, 1, 3])
    assert torch.equal(picked, torch.cat([singles[3], singles[1], singles[3]]))
    with pytest.raises(ValueError, match="batch_index"):
        prepare_noise((2, 4, 6, 5), 3, [0])


def test_ancestral_noise_is_comfyuis_default_noise_sampler():
    x = torch.randn(2, 4, 8, 8)
    sigmas = schedule("karras", 5, SigmaTable(training_sigmas(SCHEDULER)))
    ours = noise_sampler_for("euler_ancestral", x, sigmas, 1234)
    got = [ours(float(sigmas[i]), float(sigmas[i + 1])) for i in range(3)]
    for a, b in zip(got, ref_default_noise(x, 1234, 3), strict=True):
        assert torch.equal(a, b)
    # ComfyUI's quirk, kept: on the CPU the first step's noise repeats the initial noise
    assert torch.equal(got[0], prepare_noise(x.shape, 1234))


@pytest.mark.parametrize("name", ["dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde_gpu"])
def test_sde_noise_is_comfyuis_brownian_tree(name):
    pytest.importorskip("torchsde")
    x = torch.randn(1, 4, 8, 8)
    sigmas = schedule("normal", 6, SigmaTable(training_sigmas(SCHEDULER)))
    ours = noise_sampler_for(name, x, sigmas, 2 ** 63 + 11)
    assert isinstance(ours, BrownianTreeNoiseSampler)
    got = [ours(float(sigmas[i]), float(sigmas[i + 1])) for i in range(len(sigmas) - 2)]
    expected = ref_brownian_noise(x, sigmas, 2 ** 63 + 11)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert 0.5 < float(torch.cat(got).std()) < 1.5  # standard normal increments, not raw Brownian ones


def test_samplers_walk_with_the_step_noise_they_are_given():
    """The SDE update adds exactly noise(sigma, sigma_next) x sigma_next x sqrt(1 - e^-2h) each step."""
    sigmas = schedule("karras", 4, SigmaTable(training_sigmas(SCHEDULER)))
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64) * float(sigmas[0])
    calls: list[tuple[float, float]] = []

    def noise(sigma: float, sigma_next: float):
        calls.append((sigma, sigma_next))
        return torch.zeros_like(x)

    run_sampler("dpmpp_2m_sde", lambda v, s: v * 0.5, x, sigmas, noise, lambda: None)
    assert calls == [(float(sigmas[i]), float(sigmas[i + 1])) for i in range(len(sigmas) - 2)]


def _ksample(tiny, sampler: str, seed: int, cond, batch: int = 1) -> torch.Tensor:
    model, _, _ = tiny
    latent = {"samples": torch.zeros(batch, 4, 8, 8)}
    return sample(model, seed, 3, 5.0, sampler, "karras", cond, cond, latent)["samples"]


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "ddpm",
                                     "dpmpp_2m_sde", "dpmpp_3m_sde_gpu"])
def test_same_seed_same_latent_and_another_seed_another(tiny, sampler):
    from nodes.diffusion.encode import encode_text

    cond = encode_text(tiny[1], "a red fox")
    first, again = _ksample(tiny, sampler, 42, cond), _ksample(tiny, sampler, 42, cond)
    assert torch.equal(first, again)
    assert not torch.allclose(first, _ksample(tiny, sampler, 43, cond))
    assert torch.isfinite(first).all()


# ---- prompt weights and embeddings (ComfyUI's sd1_clip) ----

def test_prompt_weights_parse_as_comfyui():
    from nodes.diffusion.encode import parse_weights

    assert parse_weights("a (red:1.5) fox") == [("a ", 1.0), ("red", 1.5), (" fox", 1.0)]
    nested = parse_weights("((snow)) (cat:0.5)")
    assert [s for s, _ in nested] == ["snow", " ", "cat"]
    assert nested[0][1] == pytest.approx(1.21) and nested[2][1] == 0.5
    assert parse_weights("(dog:x)") == [("dog:x", pytest.approx(1.1))]  # a bad weight stays text, x 1.1
    assert parse_weights("[cat]") == [("[cat]", 1.0)]  # ComfyUI gives square brackets no weight


def _close(got, reference, atol: float = 1e-5) -> bool:
    """Equal up to rounding: float32 on the CPU to 1e-5; a reference computed on a GPU in fp16 (the GPU
    check) to fp16's precision."""
    if reference.dtype == torch.float16 or reference.device.type != "cpu":
        atol = max(atol, 2e-2)
    return torch.allclose(got.float().cpu(), reference.float().cpu(), atol=atol)


def _clip_rows(clip, rows):
    """The tiny CLIP's last hidden state for token rows, batched as given (the reference path)."""
    encoder = clip.encoders[0]
    with torch.inference_mode():
        return encoder(torch.tensor(rows, device=encoder.device), output_hidden_states=True).last_hidden_state.float()


def _ids(clip, text: str) -> list[int]:
    return clip.tokenizers[0](text, add_special_tokens=False).input_ids


def _row(clip, ids: list[int]) -> list[int]:
    tok = clip.tokenizers[0]
    return [tok.bos_token_id, *ids, tok.eos_token_id] + [tok.eos_token_id] * (75 - len(ids))


def test_weights_scale_tokens_away_from_the_empty_prompt(tiny):
    from nodes.diffusion.encode import encode_text

    clip = tiny[1]
    got = encode_text(clip, "a (red:1.5) fox")[0][0]
    a, red, fox = _ids(clip, "a"), _ids(clip, "red"), _ids(clip, "fox")
    tok = clip.tokenizers[0]
    empty_row = [tok.bos_token_id, tok.eos_token_id] + [tok.eos_token_id] * 75
    out = _clip_rows(clip, [_row(clip, a + red + fox), empty_row])
    z, z_empty = out[0:1].clone(), out[1]
    position = 1 + len(a)
    z[0, position] = (z[0, position] - z_empty[position]) * 1.5 + z_empty[position]
    assert got.shape == (1, 77, 64)
    assert _close(got, z)
    assert not torch.allclose(got, encode_text(clip, "a red fox")[0][0], atol=1e-4)
    # weight 1 is no weight, and an escaped bracket is text
    assert torch.equal(encode_text(clip, "a (red:1.0) fox")[0][0], encode_text(clip, "a red fox")[0][0])
    plain = _clip_rows(clip, [_row(clip, _ids(clip, "(fox)"))])
    assert _close(encode_text(clip, "\\(fox\\)")[0][0], plain)


def test_long_prompts_take_more_windows(tiny):
    from nodes.diffusion.encode import encode_text

    cond = encode_text(tiny[1], " ".join(["fox"] * 100))[0][0]
    assert cond.shape == (1, 154, 64)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_embedding_names_insert_textual_inversion_vectors(tiny, isolated_folders, fmt, caplog):
    from safetensors.torch import save_file

    from nodes.diffusion.encode import encode_text

    clip = tiny[1]
    table = clip.encoders[0].get_input_embeddings().weight.detach()
    # an embedding whose two vectors are the token embeddings of "red" and "snow" must encode as those words
    vectors = table[_ids(clip, "red") + _ids(clip, "snow")].clone()
    folder = isolated_folders / "models" / "embeddings" / "styles"
    folder.mkdir(parents=True)
    if fmt == "safetensors":
        save_file({"clip_l": vectors.contiguous()}, str(folder / "redsnow.safetensors"))
    else:
        torch.save({"string_to_param": {"*": vectors}, "name": "redsnow"}, str(folder / "redsnow.pt"))
    got = encode_text(clip, "a embedding:redsnow fox")[0][0]
    assert torch.allclose(got, encode_text(clip, "a red snow fox")[0][0], atol=1e-5)
    weighted = encode_text(clip, "a (embedding:redsnow:1.3) fox")[0][0]
    assert torch.allclose(weighted, encode_text(clip, "a (red snow:1.3) fox")[0][0], atol=1e-5)
    # a missing embedding is dropped with a warning, as in ComfyUI
    missing = encode_text(clip, "a embedding:nothere fox")[0][0]
    assert torch.equal(missing, encode_text(clip, "a fox")[0][0])
    assert "nothere" in caplog.text


# ---- CLIPSetLastLayer ----

def _states(clip, index: int, text: str):
    """The encoder's outputs for `text` in one plain window (the reference for the layer choice)."""
    tok, encoder = clip.tokenizers[index], clip.encoders[index]
    ids = tok(text, add_special_tokens=False).input_ids
    pad = 0 if clip.family == "sd2" or (clip.family == "sdxl" and index == 1) else tok.eos_token_id
    row = [tok.bos_token_id, *ids, tok.eos_token_id] + [pad] * (75 - len(ids))
    with torch.inference_mode():
        return encoder(torch.tensor([row], device=encoder.device), output_hidden_states=True)


def _norm(clip, index: int):
    encoder = clip.encoders[index]
    return getattr(encoder, "text_model", encoder).final_layer_norm


def _last_layer(clip, layer: int):
    from nodes.diffusion.nodes import CLIPSetLastLayer

    return CLIPSetLastLayer().set_last_layer(clip, layer)[0]


def test_clip_set_last_layer_sd1(tiny):
    from nodes.diffusion.encode import encode_text

    clip = tiny[1]  # 2 layers
    out = _states(clip, 0, "a red fox")
    with torch.inference_mode():
        skip = _norm(clip, 0)(out.hidden_states[-2])
    got = encode_text(_last_layer(clip, -2), "a red fox")[0][0]
    assert _close(got, skip)
    assert _close(encode_text(_last_layer(clip, -1), "a red fox")[0][0], out.last_hidden_state)
    # beyond the encoder's depth ComfyUI falls back to the last layer
    assert _close(encode_text(_last_layer(clip, -5), "a red fox")[0][0], out.last_hidden_state)
    assert clip.layer_idx is None  # the node returns a copy


def test_clip_set_last_layer_sdxl_and_sd2(tmp_path):
    from nodes.diffusion.encode import encode_text
    from nodes.diffusion.models import LoraPatch
    from nodes.diffusion.tiny import write_tiny_sd2_checkpoint, write_tiny_sdxl_checkpoint

    _, xl, _ = load_checkpoint(write_tiny_sdxl_checkpoint(tmp_path))
    default = encode_text(xl, "a red fox")[0]
    outs = [_states(xl, i, "a red fox") for i in (0, 1)]
    assert _close(default[0], torch.cat([o.hidden_states[-2] for o in outs], dim=-1))
    last = encode_text(_last_layer(xl, -1).with_patch(LoraPatch({}, 1.0)), "a red fox")[0]
    assert _close(last[0], torch.cat([o.hidden_states[-1] for o in outs], dim=-1))
    assert torch.equal(last[1]["pooled_output"], default[1]["pooled_output"])  # pooled unchanged

    _, sd2, _ = load_checkpoint(write_tiny_sd2_checkpoint(tmp_path))  # 3 layers, loaded as 2
    out = _states(sd2, 0, "a red fox")
    assert _close(encode_text(_last_layer(sd2, -2), "a red fox")[0][0], out.last_hidden_state)
    with torch.inference_mode():
        third = _norm(sd2, 0)(out.hidden_states[-2])
    assert _close(encode_text(_last_layer(sd2, -3), "a red fox")[0][0], third)
    with pytest.raises(ValueError, match="penultimate"):
        encode_text(_last_layer(sd2, -1), "a red fox")


def test_clip_skip_workflow_validates_and_runs(isolated_folders, registry):
    from compiler import validate
    from engine import Executor

    write_tiny_checkpoint(isolated_folders / "models", diffusers_folder=False)
    workflow = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15-random.safetensors"}},
        "10": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a (red:1.3) fox", "clip": ["10", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 6.0,
                                                   "sampler_name": "dpmpp_2m_sde", "scheduler": "karras",
                                                   "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
                                                   "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "skip", "images": ["8", 0]}},
    }
    result = validate(workflow, registry)
    assert result.valid, [str(e) for e in result.errors]
    out = Executor(registry).execute(result.plan, extra_data={})
    assert out.status == "success", out.error
    assert len(out.outputs["9"]["images"]) == 1
    workflow["10"]["inputs"]["stop_at_clip_layer"] = 0
    bad = validate(workflow, registry)
    assert not bad.valid and "stop_at_clip_layer" in " ".join(str(e) for e in bad.errors)


# ---- SD2 v-prediction from the weights; kohya SDXL LoRA names ----

def test_prediction_type_is_read_from_the_weights_as_comfyui():
    from nodes.diffusion.models import SD2_V_PROBE, detect_prediction

    spread, flat = torch.randn(320) * 0.3, torch.full((320,), 0.01)
    assert detect_prediction({SD2_V_PROBE: spread}, "sd2", 4) == "v_prediction"
    assert detect_prediction({SD2_V_PROBE: flat}, "sd2", 4) == "epsilon"
    assert detect_prediction({SD2_V_PROBE: spread}, "sd2", 9) == "epsilon"  # SD2 inpainting is epsilon
    assert detect_prediction({}, "sd2", 4) == "epsilon"
    assert detect_prediction({"v_pred": torch.tensor([])}, "sdxl", 4) == "v_prediction"
    assert detect_prediction({"v_pred": torch.tensor([])}, "sd1", 4) == "epsilon"  # ComfyUI: SD1 is eps


def test_sd2_768_v_single_file_loads_as_v_prediction(tmp_path, monkeypatch):
    """A tiny SD2 file with SD2's 12 output blocks: the loader reads v-prediction from the probe weight."""
    from safetensors.torch import load_file, save_file

    from nodes.diffusion import tiny as tiny_module
    from nodes.diffusion.models import SD2_V_PROBE

    monkeypatch.setattr(tiny_module, "SD2_UNET_CONFIG", {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [32, 32, 32, 32], "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "cross_attention_dim": 64,
        "attention_head_dim": [1, 1, 1, 1], "use_linear_projection": True, "norm_num_groups": 32})
    path = tiny_module.write_tiny_sd2_checkpoint(tmp_path)
    assert load_checkpoint(path)[0].prediction_type == "epsilon"  # a fresh LayerNorm bias is flat
    state = load_file(str(path))
    assert SD2_V_PROBE in state
    state[SD2_V_PROBE] = torch.randn_like(state[SD2_V_PROBE]) * 0.2
    save_file(state, str(path))
    model = load_checkpoint(path)[0]
    assert model.prediction_type == "v_prediction"
    assert model.scheduler_config["prediction_type"] == "v_prediction"


def test_kohya_sdxl_lora_with_ldm_block_names_loads(tmp_path):
    """lora_unet_input_blocks_* names (LoRAs trained on single files) patch the module the checkpoint's
    own weight of that LDM name was loaded into."""
    from safetensors.torch import load_file, save_file

    from nodes.diffusion.lora import apply_lora
    from nodes.diffusion.tiny import write_tiny_sdxl_checkpoint

    path = write_tiny_sdxl_checkpoint(tmp_path)
    model, clip, _ = load_checkpoint(path)
    file_state = load_file(str(path))
    ldm = next(k for k in sorted(file_state) if k.startswith("model.diffusion_model.input_blocks.")
               and k.endswith(".transformer_blocks.0.attn1.to_q.weight"))
    original = file_state[ldm]
    dtype = next(model.unet.parameters()).dtype  # fp16 on a GPU
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    target = next(n for n, m in model.unet.named_modules()
                  if getattr(m, "weight", None) is not None and m.weight.shape == original.shape
                  and torch.equal(m.weight.detach().cpu(), original.to(dtype)))
    stem = "lora_unet_" + ldm.removeprefix("model.diffusion_model.").removesuffix(".weight").replace(".", "_")
    down, up = torch.randn(2, original.shape[1]), torch.randn(original.shape[0], 2)
    lora = tmp_path / "kohya-sdxl.safetensors"
    save_file({f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up,
               f"{stem}.alpha": torch.tensor(1.0)}, str(lora))
    patched, _ = apply_lora(model, clip, lora, 0.5, 0.0)
    module = dict(model.unet.named_modules())[target]
    with patched.patched():
        inside = module.weight.detach().cpu().float().clone()
    assert torch.allclose(inside - original.to(dtype).float(), 0.5 * (up @ down) * (1.0 / 2), atol=tolerance)
    assert torch.equal(module.weight.detach().cpu(), original.to(dtype))  # restored afterwards


def test_dpm_2_walks_comfyuis_schedule_with_the_penultimate_sigma_dropped():
    """ComfyUI computes dpm_2's schedule one step longer and drops its second-to-last sigma (measured against
    ComfyUI 0.3.64: 10-17/255 off before, within 1/255 after)."""
    import torch

    from nodes.diffusion.ksampling import SigmaTable, schedule
    from nodes.diffusion.sampling import _k_sigmas

    table = SigmaTable(torch.linspace(0.03, 14.6, 1000))
    longer = schedule("karras", 5, table)
    expected = torch.cat([longer[:-2], longer[-1:]])
    assert torch.equal(_k_sigmas("dpm_2", "karras", 4, table, 1.0, None, None, False), expected)
    assert torch.equal(_k_sigmas("euler", "karras", 4, table, 1.0, None, None, False), schedule("karras", 4, table))
    windowed = _k_sigmas("dpm_2_ancestral", "normal", 4, table, 1.0, 1, 3, True)
    full = schedule("normal", 5, table)
    assert torch.equal(windowed[:-1], torch.cat([full[:-2], full[-1:]])[1:3])
