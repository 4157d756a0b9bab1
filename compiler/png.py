"""Workflows embedded in PNG text chunks, as ComfyUI writes them ("prompt" = API JSON, "workflow" = UI JSON)."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from compiler.errors import WorkflowError, WorkflowFormatError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_CHUNK = 64 * 1024 * 1024  # bytes a compressed text chunk may inflate to


def png_text_chunks(data: bytes) -> dict[str, str]:
    """The tEXt / zTXt / iTXt chunks of a PNG as {keyword: text}; no image library needed."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"tEXt":
                key, _, value = body.partition(b"\x00")
                chunks[key.decode("latin-1")] = value.decode("latin-1")
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\x00")
                chunks[key.decode("latin-1")] = _inflate(rest[1:]).decode("latin-1")
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\x00")
                compressed, _method = rest[0], rest[1]
                _lang, _, rest = rest[2:].partition(b"\x00")
                _translated, _, text = rest.partition(b"\x00")
                chunks[key.decode("latin-1")] = (_inflate(text) if compressed else text).decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError, ValueError):
            continue
        if kind == b"IEND":
            break
    return chunks


def _inflate(data: bytes) -> bytes:
    """Decompress a text chunk, refusing one that inflates beyond MAX_TEXT_CHUNK (a zip bomb)."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, MAX_TEXT_CHUNK)
    if inflater.unconsumed_tail:
        raise ValueError(f"a compressed text chunk inflates beyond {MAX_TEXT_CHUNK} bytes")
    return text


def workflow_from_png(data: bytes) -> Any:
    """The API prompt of a ComfyUI/NodeWeaver PNG, else its UI workflow."""
    try:
        chunks = png_text_chunks(data)
    except ValueError as exc:
        raise WorkflowFormatError([WorkflowError(type="invalid_workflow_format", message=str(exc))]) from None
    for key in ("prompt", "workflow"):
        if key in chunks:
            try:
                return json.loads(chunks[key])
            except (ValueError, RecursionError):  # not JSON, or nested too deeply: try the other chunk
                continue
    raise WorkflowFormatError([WorkflowError(type="invalid_workflow_format",
                                             message="the PNG carries no ComfyUI workflow in its text chunks")])
