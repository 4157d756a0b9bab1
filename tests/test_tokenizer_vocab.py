"""A lone SD1.5 single-file checkpoint (no tokenizer folder anywhere) loads and encodes with the CLIP vocabulary
NodeWeaver ships (nodes/diffusion/data/)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

pytestmark = pytest.mark.slow  # torch: a tiny random-weight model through the real single-file loader

from nodes.diffusion import models  # noqa: E402
from nodes.diffusion.nodes import CheckpointLoaderSimple, CLIPTextEncode  # noqa: E402

NAME = "lone-sd15"


def write_lone_checkpoint(models_root: Path) -> Path:
    """The tiny SD1.x architecture with CLIP's real vocabulary size, as one .safetensors and nothing beside it."""
    from safetensors.torch import save_file

    from nodes.diffusion.ldm_export import clip_to_ldm, unet_to_ldm, vae_to_ldm
    from nodes.diffusion.tiny import UNET_CONFIG, VAE_CONFIG, build_tiny_components

    unet, vae, text = build_tiny_components(models.CLIP_VOCAB_SIZE, seed=3)
    state = {**unet_to_ldm(unet.state_dict(), UNET_CONFIG), **vae_to_ldm(vae.state_dict(), VAE_CONFIG),
             **clip_to_ldm(text.state_dict())}
    checkpoints = models_root / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    path = checkpoints / f"{NAME}.safetensors"
    save_file({k: v.contiguous().float() for k, v in state.items()}, str(path))
    return path


@pytest.fixture
def models_root(isolated_folders, monkeypatch) -> Path:
    monkeypatch.setattr(models, "_open_clip_bpe", lambda: None)  # the shipped copy, even where open_clip is
    monkeypatch.delenv("NODEWEAVER_COMFYUI_DIR", raising=False)
    root = isolated_folders / "models"
    write_lone_checkpoint(root)
    return root


def test_shipped_vocabulary_is_clips() -> None:
    assert models.PACKAGED_BPE.is_file()
    assert (models.PACKAGED_BPE.parent / "CLIP_VOCAB_LICENSE.txt").is_file()


def test_lone_single_file_loads_and_encodes(models_root: Path) -> None:
    checkpoints = models_root / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"{NAME}.safetensors"]
    _model, clip, _vae = CheckpointLoaderSimple().load_checkpoint(f"{NAME}.safetensors")
    tokenizer = clip.tokenizers[0]
    assert len(tokenizer) == models.CLIP_VOCAB_SIZE
    # CLIP's own ids for this prompt (start, a, photo, of, a, cat, end)
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    (cond,) = CLIPTextEncode().encode(clip, "a photo of a cat")
    embedding = cond[0][0]
    assert tuple(embedding.shape) == (1, 77, 64)
    assert torch.isfinite(embedding).all()
    other = CLIPTextEncode().encode(clip, "a red fox in the snow")[0][0][0]
    assert not torch.allclose(embedding, other)  # different words, different conditioning
    written = models_root / "tokenizers" / "clip-openai"
    assert (written / "vocab.json").is_file() and (written / "merges.txt").is_file()


def test_half_written_vocabulary_is_rewritten(models_root: Path) -> None:
    folder = models_root / "tokenizers" / "clip-openai"
    folder.mkdir(parents=True)
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")  # interrupted: no vocab.json
    found = models.find_tokenizer_dir(models_root / "checkpoints" / f"{NAME}.safetensors", models.CLIP_VOCAB_SIZE)
    assert found == folder
    assert len((folder / "merges.txt").read_text(encoding="utf-8").splitlines()) == 1 + 48894


def test_missing_vocabulary_is_a_clear_error(models_root: Path, monkeypatch) -> None:
    monkeypatch.setattr(models, "PACKAGED_BPE", models_root / "nowhere.txt.gz")
    with pytest.raises(models.CheckpointError, match="no CLIP tokenizer with 49408 tokens found for lone-sd15"):
        CheckpointLoaderSimple().load_checkpoint(f"{NAME}.safetensors")


def test_other_vocabulary_sizes_still_need_their_files(models_root: Path) -> None:
    with pytest.raises(models.CheckpointError, match="no CLIP tokenizer with 1000 tokens"):
        models.find_tokenizer_dir(models_root / "checkpoints" / f"{NAME}.safetensors", 1000)
