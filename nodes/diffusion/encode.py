"""Prompt text → CONDITIONING ([[embedding, {"pooled_output": ...}]]), as ComfyUI's sd1_clip encodes it.

ComfyUI's prompt syntax: `(words:1.2)` sets a weight, `(words)` multiplies it by 1.1 (nesting multiplies),
`\\(` and `\\)` are literal brackets, and `embedding:name` inserts a textual-inversion embedding from the
embeddings folder. Square brackets carry no weight in ComfyUI (that is A1111's syntax), so they stay text.
A weight w moves a token's output away from the empty prompt's output at the same position:
z = (z - z_empty) * w + z_empty. Tokens are cut into 77-token windows word group by word group.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from nodes.diffusion.models import ClipModel, torch_or_error

MAX_LENGTH = 77
MAX_WORD_LENGTH = 8  # a group of fewer tokens moves whole to the next window instead of being cut
EMBEDDING = "embedding:"
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin")
_LOG = logging.getLogger(__name__)

Token = Any  # an int token id, or a tensor (one row of a textual-inversion embedding)


# ---- parsing: text -> (segment, weight) ----

def _split_parentheses(text: str) -> list[str]:
    """Top-level pieces of `text`: bracketed groups `( ... )` and the plain text between them."""
    pieces: list[str] = []
    current, depth = "", 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                pieces.append(current)
                current = ""
            current += char
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                pieces.append(current + ")")
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        pieces.append(current)
    return pieces


def parse_weights(text: str, weight: float = 1.0) -> list[tuple[str, float]]:
    """ComfyUI's token_weights: (segment, weight) pairs; a bad `:weight` leaves the text as written."""
    out: list[tuple[str, float]] = []
    for piece in _split_parentheses(text):
        if len(piece) >= 2 and piece[0] == "(" and piece[-1] == ")":
            inner, inner_weight = piece[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1:])
                    inner = inner[:colon]
                except ValueError:
                    pass
            out += parse_weights(inner, inner_weight)
        else:
            out.append((piece, weight))
    return out


def _escape(text: str) -> str:
    return text.replace("\\)", "\0\1").replace("\\(", "\0\2")


def _unescape(text: str) -> str:
    return text.replace("\0\1", ")").replace("\0\2", "(")


# ---- textual-inversion embeddings ----

def _embedding_file(name: str) -> Path | None:
    """`name` (or name + .safetensors/.pt/.bin) in an embeddings folder or one below it, as ComfyUI finds it."""
    from runtime import folders

    for root in folders.model_folders("embeddings"):
        if not root.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(root, followlinks=True):
            try:
                base = folders.safe_join(Path(dirpath), name)
            except folders.UnsafePathError:  # a name reaching outside the folder: not an embedding here
                break
            for candidate in (base, *(base.with_name(base.name + ext) for ext in EMBEDDING_EXTENSIONS)):
                if candidate.is_file():
                    return candidate
    return None


def _embedding_vectors(data: Any, size: int, key: str):
    """The [n, size] vectors of a loaded embedding file, in ComfyUI's order of formats."""
    torch = torch_or_error()
    if isinstance(data, dict) and "string_to_param" in data:  # A1111 / textual-inversion .pt
        return next(iter(data["string_to_param"].values()))
    if isinstance(data, list):
        return torch.cat([t.reshape(-1, t.shape[-1]) for item in data for t in item.values()
                          if t.shape[-1] == size])
    if isinstance(data, dict) and key in data:  # SDXL files: {"clip_l": ..., "clip_g": ...}
        return data[key]
    if isinstance(data, dict) and data:
        return next(iter(data.values()))
    raise ValueError("the file holds no embedding tensors")


def load_embedding(name: str, size: int, key: str):
    """An embedding's vectors ([n, size]), or None (with ComfyUI's warning) when it is missing or unreadable."""
    path = _embedding_file(name)
    if path is None:
        return None
    torch = torch_or_error()
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), weights_only=True, map_location="cpu")
        vectors = _embedding_vectors(data, size, key)
    except (OSError, RuntimeError, ValueError, KeyError, StopIteration) as exc:
        _LOG.warning("cannot read embedding %s (%s): %s; ignoring it", name, path, exc)
        return None
    return vectors.float().reshape(-1, vectors.shape[-1])


# ---- tokenizing: (segment, weight) -> 77-token windows of (token, weight) ----

class _Special:
    """One encoder's start, end and pad tokens and its embedding size and key (ComfyUI's per model)."""

    def __init__(self, tokenizer: Any, encoder: Any, family: str, index: int):
        self.tokenizer = tokenizer
        self.start, self.end = tokenizer.bos_token_id, tokenizer.eos_token_id
        pads_with_zero = family == "sd2" or (family == "sdxl" and index == 1)  # pad_with_end=False there
        self.pad = 0 if pads_with_zero else self.end
        self.size = int(encoder.config.hidden_size)
        self.key = {"sd2": "clip_h"}.get(family, "clip_g" if index == 1 else "clip_l")


def _embedding_group(word: str, weight: float, special: _Special) -> tuple[list, str]:
    """(the embedding's rows as weighted tokens, the text left after its name) for `embedding:name rest`."""
    parts = word[len(EMBEDDING):].strip("\n").split()
    name, leftover = (parts[0] if parts else ""), " ".join(parts[1:])
    vectors = load_embedding(name, special.size, special.key) if name else None
    if vectors is None and name.strip(",") != name:
        stripped = name.strip(",")
        vectors = load_embedding(stripped, special.size, special.key)
        leftover = f"{name[len(stripped):]} {leftover}"
    if vectors is None:
        _LOG.warning("embedding:%s does not exist, ignoring it", name)
        return [], leftover
    if vectors.shape[-1] != special.size:
        _LOG.warning("embedding:%s has width %d but this CLIP has %d, ignoring it", name, vectors.shape[-1],
                     special.size)
        return [], leftover
    return [(row, weight) for row in vectors], leftover


def _token_groups(text: str, special: _Special) -> list[list[tuple[Token, float]]]:
    """Weighted token groups: one per text segment and one per embedding, as ComfyUI splits the prompt."""
    groups: list[list[tuple[Token, float]]] = []
    for segment, weight in parse_weights(_escape(text)):
        split = re.split(f" {EMBEDDING}|\n{EMBEDDING}", _unescape(segment))
        words = [split[0], *(EMBEDDING + rest for rest in split[1:])]
        for word in (w for w in words if w != ""):
            if word.startswith(EMBEDDING):
                group, word = _embedding_group(word, weight, special)
                if group:
                    groups.append(group)
                if word == "":
                    continue
            ids = special.tokenizer(word, add_special_tokens=False, truncation=False).input_ids
            groups.append([(t, weight) for t in ids])
    return groups


def tokenize_with_weights(text: str, special: _Special) -> list[list[tuple[Token, float]]]:
    """ComfyUI's tokenize_with_weights: windows of 77 (start, tokens, end, pads); a group of 8 or more tokens
    is cut at a window's end, a shorter one moves whole to the next window."""
    start, end, pad = (special.start, 1.0), (special.end, 1.0), (special.pad, 1.0)
    batch: list[tuple[Token, float]] = [start]
    windows = [batch]
    for group in _token_groups(text, special):
        is_large = len(group) >= MAX_WORD_LENGTH
        while group:
            if len(group) + len(batch) > MAX_LENGTH - 1:
                remaining = MAX_LENGTH - len(batch) - 1
                if is_large:
                    batch.extend(group[:remaining])
                    batch.append(end)
                    group = group[remaining:]
                else:
                    batch.append(end)
                    batch.extend([pad] * remaining)
                batch = [start]
                windows.append(batch)
            else:
                batch.extend(group)
                group = []
    batch.append(end)
    batch.extend([pad] * (MAX_LENGTH - len(batch)))
    return windows


# ---- encoding ----

def _hidden(out: Any, encoder: Any, family: str, index: int, layer_idx: int | None):
    """The hidden states ComfyUI conditions on, honouring CLIPSetLastLayer's layer_idx."""
    layers = int(encoder.config.num_hidden_layers)
    norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers 5 has no text_model
    if family == "sd2":  # loaded without its last layer: ours[n + 1] is ComfyUI's layer n
        if layer_idx is None:
            return out.last_hidden_state
        if layer_idx >= -1 or abs(layer_idx) > layers + 1:
            raise ValueError(f"SD2's CLIP encodes from its penultimate layer; stop_at_clip_layer={layer_idx} "
                             f"is not available here: use -2 (the default) down to -{layers + 1}")
        return norm(out.hidden_states[layer_idx + 1])
    if family == "sdxl" and layer_idx is None:
        return out.hidden_states[-2]
    if layer_idx is None or abs(layer_idx) > layers:
        return out.last_hidden_state
    hidden = out.hidden_states[layer_idx]
    return hidden if family == "sdxl" else norm(hidden)


def _forward(encoder: Any, rows: list[list[Token]], special: _Special, device: str, torch):
    """Run the encoder on windows whose entries are token ids or embedding vectors: a vector's position
    gets a placeholder id whose token embedding is swapped for the vector (position embeddings still add)."""
    ids = [[t if isinstance(t, int) else special.start for t in row] for row in rows]
    vectors = [(r, j, t) for r, row in enumerate(rows) for j, t in enumerate(row) if not isinstance(t, int)]
    input_ids = torch.tensor(ids, device=device)
    if not vectors:
        return encoder(input_ids, output_hidden_states=True)
    token_embedding = encoder.get_input_embeddings()

    def swap(_module, _inputs, output):
        output = output.clone()
        for r, j, vector in vectors:
            if vector.shape[-1] == output.shape[-1]:
                output[r, j] = vector.to(output)
        return output

    handle = token_embedding.register_forward_hook(swap)
    try:
        return encoder(input_ids, output_hidden_states=True)
    finally:
        handle.remove()


def _encode_one(clip: ClipModel, index: int, text: str, torch):
    """One encoder's conditioning [1, 77k, width] with the weights applied, and its pooled output."""
    tokenizer, encoder = clip.tokenizers[index], clip.encoders[index]
    special = _Special(tokenizer, encoder, clip.family, index)
    windows = tokenize_with_weights(text, special)
    weighted = any(w != 1.0 for window in windows for _, w in window)
    rows = [[t for t, _ in window] for window in windows]
    if weighted:
        rows.append([special.start, special.end] + [special.pad] * (MAX_LENGTH - 2))
    out = _forward(encoder, rows, special, clip.device, torch)
    hidden = _hidden(out, encoder, clip.family, index, clip.layer_idx).float()
    pooled = out.text_embeds[0:1].float().cpu() if hasattr(out, "text_embeds") else None
    chunks = []
    for k, window in enumerate(windows):
        z = hidden[k:k + 1].clone()
        if weighted:
            empty = hidden[-1]
            weights = torch.tensor([w for _, w in window], dtype=z.dtype, device=z.device).view(1, -1, 1)
            z = torch.where(weights != 1.0, (z - empty) * weights + empty, z)  # weight 1: left untouched
        chunks.append(z.cpu())
    return torch.cat(chunks, dim=1), pooled


def encode_text(clip: ClipModel, text: str) -> list:
    """CLIPTextEncode: ComfyUI's conditioning for `text` (SDXL: both encoders side by side, clip_g pooled)."""
    torch = torch_or_error()
    outputs, pooled = [], None
    with clip.patched(), torch.inference_mode():
        for index in range(len(clip.encoders)):
            cond, index_pooled = _encode_one(clip, index, text, torch)
            outputs.append(cond)
            if clip.family == "sdxl" and index == 1:
                pooled = index_pooled
    if len(outputs) == 1:
        cond = outputs[0]
    else:  # as ComfyUI's SDXLClipModel: cut both to the shorter length, then side by side
        length = min(o.shape[1] for o in outputs)
        cond = torch.cat([o[:, :length] for o in outputs], dim=-1)
    return [[cond, {"pooled_output": pooled}]]
