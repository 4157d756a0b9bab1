"""Record what a real ComfyUI answers, for the CI stand-in (tests/fakes/comfyui_standin.py) to replay.

The stand-in executes nothing: every response and websocket message it sends was captured here from a real
ComfyUI (v0.3.64 for the files in this folder). Re-record after a ComfyUI upgrade:

  1. Make the two upscale models the workflows use (a tiny 2x Compact net and a file that fails to load),
     with ComfyUI's own Python (it has torch, spandrel and safetensors):
         /path/to/comfy-venv/bin/python tests/data/comfyui_recorded/record.py make-models COMFY_BASE/models
  2. Start ComfyUI on the CPU:  python main.py --cpu --port 8201 [--base-directory COMFY_BASE]
  3. With NodeWeaver's Python (httpx, websockets, Pillow):
         .venv/bin/python tests/data/comfyui_recorded/record.py record http://127.0.0.1:8201

It uploads a 32x32 test image (small.png), then records: /object_info (trimmed to the classes used),
/system_stats, /prompt (queue info), /models, a /prompt 400 with node_errors, the websocket messages of a
successful run with cached nodes and progress, of a failing run (execution_error) and of an interrupted
run, each run's /history entry, and the /view bytes of the PNG the successful run saved.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLASSES = ("LoadImage", "ImageScaleBy", "ImageScale", "UpscaleModelLoader", "ImageUpscaleWithModel",
           "ImageInvert", "SaveImage", "PreviewImage")
TINY_MODEL = "tiny_2x.safetensors"
BROKEN_MODEL = "broken.safetensors"


def upscale_workflow(scale: float, model: str = TINY_MODEL, prefix: str = "NWRecord") -> dict[str, Any]:
    """LoadImage -> ImageScaleBy -> ImageUpscaleWithModel -> ImageInvert -> SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model}},
        "3": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                       "scale_by": scale}},
        "4": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["3", 0]}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": prefix}},
    }


def invalid_workflow() -> dict[str, Any]:
    """Three validation failures ComfyUI reports per node: a missing file, a missing link, a bad choice."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "no_such_file.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "NWRecord"}},
        "4": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "sideways",
                                                     "width": 64, "height": 64, "crop": "disabled"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }


def slow_workflow() -> dict[str, Any]:
    """Big enough (many upscale tiles) that an interrupt lands while the upscale node runs."""
    flow = upscale_workflow(1.0, prefix="NWRecordSlow")
    flow["3"] = {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                        "width": 2048, "height": 2048, "crop": "disabled"}}
    return flow


def small_png() -> bytes:
    from PIL import Image

    image = Image.new("RGB", (32, 32))
    image.putdata([(x * 8, y * 8, 128) for y in range(32) for x in range(32)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Recorder:
    def __init__(self, url: str) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=120)
        self.client_id = uuid.uuid4().hex

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def upload_input(self) -> None:
        files = {"image": ("small.png", small_png(), "image/png")}
        self.http.post("/upload/image", files=files, data={"overwrite": "true"}).raise_for_status()

    def run(self, prompt: dict[str, Any], interrupt_on_progress: bool = False) -> dict[str, Any]:
        """Submit with a websocket open; every JSON message until ComfyUI's end-of-prompt signal."""
        from websockets.sync.client import connect

        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        messages: list[dict[str, Any]] = []
        binary = 0
        with connect(ws_url, open_timeout=10, max_size=None) as ws:
            messages.append(json.loads(ws.recv(timeout=10)))  # the greeting: status with sid
            body = {"prompt": prompt, "client_id": self.client_id}
            answer = self.http.post("/prompt", json=body)
            answer.raise_for_status()
            prompt_id = answer.json()["prompt_id"]
            interrupted = False
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                raw = ws.recv(timeout=600)
                if isinstance(raw, bytes):
                    binary += 1
                    continue
                message = json.loads(raw)
                messages.append(message)
                data = message.get("data", {})
                if interrupt_on_progress and message["type"] == "progress" and not interrupted:
                    self.http.post("/interrupt", json={"prompt_id": prompt_id}).raise_for_status()
                    interrupted = True
                if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
        history = self.get(f"/history/{prompt_id}")
        return {"prompt_id": prompt_id, "client_id": self.client_id, "prompt": prompt,
                "submit_answer": answer.json(), "messages": messages, "binary_frames_skipped": binary,
                "history": history}

    def invalid(self) -> dict[str, Any]:
        prompt = invalid_workflow()
        response = self.http.post("/prompt", json={"prompt": prompt, "client_id": self.client_id})
        return {"prompt": prompt, "status": response.status_code, "response": response.json()}


def write(name: str, value: Any, out: Path) -> None:
    (out / name).write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out / name}", file=sys.stderr)


def record(url: str, out: Path) -> None:
    rec = Recorder(url)
    rec.upload_input()
    object_info = rec.get("/object_info")
    write("object_info.json", {name: object_info[name] for name in CLASSES}, out)
    write("system_stats.json", rec.get("/system_stats"), out)
    write("queue_info.json", rec.get("/prompt"), out)
    write("models.json", {"folders": rec.get("/models"), "upscale_models": rec.get("/models/upscale_models")},
          out)
    write("prompt_400.json", rec.invalid(), out)
    rec.run(upscale_workflow(1.0))  # warm-up: fills the cache so the next run has cached nodes
    success = rec.run(upscale_workflow(1.5))
    write("run_success.json", success, out)
    outputs = success["history"][success["prompt_id"]]["outputs"]
    image = outputs["6"]["images"][0]
    view = rec.http.get("/view", params=image)
    view.raise_for_status()
    (out / "view_output.png").write_bytes(view.content)
    write("run_error.json", rec.run(upscale_workflow(1.0, model=BROKEN_MODEL)), out)
    write("run_interrupted.json", rec.run(slow_workflow(), interrupt_on_progress=True), out)
    write("meta.json", {"url": url, "comfyui_version": rec.get("/system_stats")["system"]["comfyui_version"],
                        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "view_output": image}, out)


def make_models(models_dir: Path) -> None:
    """The tiny upscale model (random weights: the picture is not the point) and one that fails to load."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

    folder = models_dir / "upscale_models"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / TINY_MODEL))
    (folder / BROKEN_MODEL).write_bytes(b"this is not a safetensors file")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record a running ComfyUI")
    rec.add_argument("url")
    rec.add_argument("--out", type=Path, default=HERE)
    models = sub.add_parser("make-models", help="write the two upscale models into a ComfyUI models folder")
    models.add_argument("models_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.url, args.out)
    else:
        make_models(args.models_dir)


if __name__ == "__main__":
    main()
