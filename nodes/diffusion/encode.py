"""Prompt text → CONDITIONING ([[embedding, {"pooled_output": ...}]]), in 77-token chunks like ComfyUI."""

from __future__ import annotations

from nodes.diffusion.models import ClipModel, torch_or_error

CHUNK = 75  # tokens per window, plus start and end tokens


def encode_text(clip: ClipModel, text: str) -> list:
    torch = torch_or_error()
    outputs = []
    pooled = None
    with clip.patched(), torch.inference_mode():
        for index, (tokenizer, encoder) in enumerate(zip(clip.tokenizers, clip.encoders, strict=True)):
            ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
            windows = [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)] or [[]]
            bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
            chunks = []
            for window in windows:
                row = [bos, *window, eos] + [pad] * (CHUNK - len(window))
                input_ids = torch.tensor([row], device=clip.device)
                out = encoder(input_ids, output_hidden_states=True)
                if clip.family in ("sd1", "sd2"):  # SD2's encoder was loaded without its last layer
                    hidden = out.last_hidden_state
                else:
                    hidden = out.hidden_states[-2]
                    if index == 1 and pooled is None:
                        pooled = out.text_embeds.float().cpu()
                chunks.append(hidden.float().cpu())
            outputs.append(torch.cat(chunks, dim=1))
    cond = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
    return [[cond, {"pooled_output": pooled}]]
