"""Remote ComfyUI servers: settings and flags, the remote catalog, and routing jobs between the local engine
and the servers (mixed graphs: NodeWeaver-only nodes run here, their values cross as literals)."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import pytest
from conftest import shared_catalog

from compiler import validate
from compiler.plan import Plan
from engine.events import EventBus
from engine.executor import ExecutionResult
from engine.routing import (
    RemoteServer,
    RoutingError,
    choose_route,
    png_bytes,
    read_catalog,
    runs_here,
    split_plan,
    substitute,
)

URL = "http://comfy.test:8188"


def remote_catalog() -> dict[str, Any]:
    """ComfyUI 0.3.64's /object_info with one checkpoint installed on that server."""
    info = json.loads(shared_catalog().read_text(encoding="utf-8"))
    info = copy.deepcopy(info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["remote_xl.safetensors"]
    return info


class FakeClient:
    """ComfyUIClient's catalog and queue calls; `down` makes every call fail as a dead server does."""

    def __init__(self, info: dict[str, Any] | None = None, queue: int = 0) -> None:
        self.info = info if info is not None else remote_catalog()
        self.queue = queue
        self.down = False

    def object_info(self) -> dict[str, Any]:
        if self.down:
            raise ConnectionRefusedError("connection refused")
        return self.info

    def queue_remaining(self) -> int:
        return self.queue


class FakeRemote:
    """A remote Backend: upper-cases CaseConverter inputs, shows PreviewAny's text, emits ComfyUI's events;
    with `block`, waits until interrupted."""

    slots = 1

    def __init__(self, block: bool = False) -> None:
        self.bus = EventBus()
        self.plans: list[Plan] = []
        self.block = block
        self.started = threading.Event()
        self.stop = threading.Event()
        self.interrupted: list[str | None] = []

    def execute(self, plan: Plan, *, prompt_id: str | None = None, extra_data: dict | None = None,
                node_timeout: float | None = None) -> ExecutionResult:
        self.plans.append(plan)
        self.bus.emit("execution_start", prompt_id=prompt_id)
        self.started.set()
        if self.block and self.stop.wait(10):
            self.bus.emit("execution_interrupted", prompt_id=prompt_id, node_id=None)
            return ExecutionResult(prompt_id=str(prompt_id), status="interrupted")
        values: dict[str, str] = {}
        outputs: dict[str, Any] = {}
        for node_id in plan.order:
            node = plan.prompt[node_id]
            self.bus.emit("executing", node=node_id, prompt_id=prompt_id)
            source = next(iter(node["inputs"].values()))
            text = values[source[0]] if isinstance(source, list) else source
            values[node_id] = text.upper() if node["class_type"] == "CaseConverter" else text
            if node["class_type"] == "PreviewAny":
                outputs[node_id] = {"text": [text]}
                self.bus.emit("executed", node=node_id, output=outputs[node_id], prompt_id=prompt_id)
        self.bus.emit("execution_success", prompt_id=prompt_id)
        return ExecutionResult(prompt_id=str(prompt_id), status="success", outputs=outputs,
                               executed=list(plan.order))

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.interrupted.append(prompt_id)
        self.stop.set()

    def shutdown(self, wait: float = 0.0) -> None:
        self.stop.set()


def connected(registry, client: FakeClient | None = None, backend: FakeRemote | None = None) -> RemoteServer:
    server = RemoteServer(url=URL, client=client or FakeClient(), backend=backend or FakeRemote())
    read_catalog(server, registry)
    return server


# LLM-ish text made here (TextTemplate is NodeWeaver's), upper-cased and shown by the ComfyUI server
MIXED = {
    "1": {"class_type": "TextTemplate", "inputs": {"template": "a {animal} in snow", "values": "animal=fox"}},
    "2": {"class_type": "CaseConverter", "inputs": {"string": ["1", 0], "mode": "UPPERCASE"}},
    "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
}


def plan_of(registry, workflow: dict) -> Plan:
    result = validate(workflow, registry)
    assert result.valid, result.errors
    return result.plan


def here(registry, plan: Plan) -> dict[str, bool]:
    return {n: runs_here(plan.prompt[n], registry) for n in plan.order}


# ---- settings and flags --------------------------------------------------------------------------------------
def test_flags_and_environment_fill_the_comfyui_section(monkeypatch):
    from nodeweaver.cli import _activate_settings, build_parser
    from runtime.settings import load_settings

    monkeypatch.setenv("NODEWEAVER_COMFYUI__URLS", "http://a:1, http://b:2/")
    monkeypatch.setenv("NODEWEAVER_COMFYUI__LOST_AFTER", "7")
    assert load_settings().comfyui.urls == ["http://a:1", "http://b:2"]
    args = build_parser().parse_args(["run", "w.json", "--comfyui-url", "http://c:3/", "--comfyui-url",
                                      "http://c:3", "--comfyui-header", "Authorization: Bearer s3cret"])
    settings = _activate_settings(args)
    assert settings.comfyui.urls == ["http://c:3"]  # flags win over the environment; duplicates go
    assert settings.comfyui.headers == {"Authorization": "Bearer s3cret"}
    assert settings.comfyui.lost_after == 7  # the rest of the section still comes from the environment
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("flags, said", [(["--comfyui-url", "ftp://x"], "not an http(s) URL"),
                                         (["--comfyui-header", "no colon s3cret"], "Name: value")])
def test_bad_comfyui_flags_are_refused_plainly(capsys, flags, said):
    from nodeweaver.cli import main

    assert main(["nodes", *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and "s3cret" not in err


def test_config_file_section(tmp_path, monkeypatch):
    from runtime.settings import load_settings

    assert load_settings().comfyui.prefer == "remote"  # the default: a server that has every node runs the job

    config = tmp_path / "config.toml"
    config.write_text('[comfyui]\nurls = ["http://gpu:8188"]\nprefer = "local"\ntimeout = 5\n'
                      '[comfyui.headers]\nX-Key = "k"\n', encoding="utf-8")
    monkeypatch.setenv("NODEWEAVER_CONFIG", str(config))
    section = load_settings().comfyui
    assert (section.urls, section.prefer, section.timeout, section.headers) == (
        ["http://gpu:8188"], "local", 5.0, {"X-Key": "k"})


# ---- the remote catalog ----------------------------------------------------------------------------------------
def test_remote_catalog_is_marked_and_offers_the_servers_models(registry):
    server = connected(registry)
    assert server.error is None and "KSampler" in server.names
    assert registry.is_remote("CaseConverter") and registry.pack_of("CaseConverter") == f"comfyui:{URL}"
    assert not registry.is_remote("KSampler")  # executable here too
    ckpt = registry.node_info("CheckpointLoaderSimple")["input"]["required"]["ckpt_name"][0]
    assert "remote_xl.safetensors" in ckpt
    assert "remote_xl.safetensors" not in registry.local_info("CheckpointLoaderSimple")["input"]["required"][
        "ckpt_name"][0]
    # read again after the server lost a node: it is gone from the catalog
    del server.client.info["CaseConverter"]
    assert read_catalog(server, registry)["ok"]
    assert "CaseConverter" not in registry


def test_a_server_that_is_down_is_reported_not_fatal(registry):
    client = FakeClient()
    client.down = True
    server = connected(registry, client)
    assert server.names == frozenset() and "ConnectionRefusedError" in server.error
    assert "CaseConverter" not in registry
    client.down = False
    assert read_catalog(server, registry) == {"url": URL, "ok": True, "nodes": len(client.info), "error": None}
    assert registry.is_remote("CaseConverter")


# ---- splitting (pure) -------------------------------------------------------------------------------------------
def test_every_node_here_runs_there_unless_local_is_preferred(registry, isolated_folders):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(isolated_folders / "input" / "photo.png")
    server = connected(registry)
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}}}
    plan = plan_of(registry, workflow)
    assert choose_route(plan, registry, [server], prefer="local").server is None
    route = choose_route(plan, registry, [server])
    assert route.server is server and route.split.local == [] and route.split.remote == plan.order


def test_a_model_installed_only_remotely_sends_its_nodes_there(registry):
    server = connected(registry)
    workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "remote_xl.safetensors"}},
                "2": {"class_type": "TextTemplate", "inputs": {"template": "a {x}", "values": "x=cat"}},
                "3": {"class_type": "CLIPTextEncode", "inputs": {"text": ["2", 0], "clip": ["1", 1]}},
                "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
                "5": {"class_type": "KSampler", "inputs": {
                    "model": ["1", 0], "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0],
                    "seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                    "denoise": 1.0}},
                "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
                "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}}}
    plan = plan_of(registry, workflow)  # validates: the remote checkpoint is a choice
    assert not runs_here(plan.prompt["1"], registry)
    route = choose_route(plan, registry, [server])
    assert route.server is server and route.split.local == ["2"]
    assert sorted(route.split.remote) == ["1", "3", "4", "5", "6", "7"]
    [crossing] = route.split.crossings
    assert (crossing.node, crossing.input, crossing.source, crossing.slot, crossing.type) == (
        "3", "text", "2", 0, "STRING")


def test_substitution_writes_local_values_in_as_literals(registry):
    server = connected(registry)
    plan = plan_of(registry, MIXED)
    split = split_plan(plan, registry, server.names, here(registry, plan))
    assert (split.local, split.remote) == (["1"], ["2", "3"])
    done = ExecutionResult(prompt_id="p", status="success", node_outputs={"1": [["a fox in snow"]]})
    remote = substitute(plan, split, done)
    assert remote.prompt["2"]["inputs"] == {"string": "a fox in snow", "mode": "UPPERCASE"}
    assert remote.order == ["2", "3"] and remote.outputs == ["3"]
    assert plan.prompt["2"]["inputs"]["string"] == ["1", 0]  # the job's own plan is untouched
    with pytest.raises(RoutingError, match="list of 2 values"):
        substitute(plan, split, ExecutionResult(prompt_id="p", status="success",
                                                node_outputs={"1": [["a", "b"]]}))


def test_an_image_made_here_crosses_as_an_uploaded_png_read_by_a_loader(registry):
    import io

    import numpy as np
    import torch
    from PIL import Image

    server = connected(registry)
    workflow = {"1": {"class_type": "DashScopeImageSynthesis", "inputs": {"prompt": "a fox"}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
                "4": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                               "scale_by": 2.0}}}
    plan = Plan(prompt=workflow, order=["1", "2", "3", "4"], outputs=["3"])
    split = split_plan(plan, registry, server.names - {"DashScopeImageSynthesis"}, dict.fromkeys(plan.order, True))
    assert split.local == ["1"] and [(c.node, c.type) for c in split.crossings] == [("2", "IMAGE"), ("4", "IMAGE")]
    pixels = torch.tensor([[[[0.0, 0.5, 1.0], [1 / 255, 128 / 255, 254 / 255]]]])  # [1, 1, 2, 3]
    uploads: list[tuple[bytes, str]] = []
    done = ExecutionResult(prompt_id="job-1", status="success", node_outputs={"1": [[pixels]]})
    remote = substitute(plan, split, done, lambda data, name: uploads.append((data, name)) or "up/" + name)
    [(data, name)] = uploads  # one upload, read by one loader, for both links
    assert name == "nodeweaver_job-1_1_0.png"
    loader = remote.order[0]
    assert remote.prompt[loader] == {"class_type": "LoadImage", "inputs": {"image": "up/" + name}}
    assert remote.prompt["2"]["inputs"]["image"] == remote.prompt["4"]["inputs"]["image"] == [loader, 0]
    assert remote.order == [loader, "2", "3", "4"] and "1" not in remote.prompt
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).tolist()
    assert decoded == [[[0, 128, 255], [1, 128, 254]]]  # 8-bit pixels come back exactly
    with pytest.raises(RoutingError, match="only a single IMAGE"):
        substitute(plan, split, ExecutionResult(prompt_id="p", status="success",
                                                node_outputs={"1": [[torch.zeros(2, 4, 4, 3)]]}), lambda d, n: n)


def test_a_mask_crosses_as_grayscale_for_load_image_mask_and_needs_the_loader(registry):
    import io

    import numpy as np
    import torch
    from PIL import Image

    mask = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    assert np.asarray(Image.open(io.BytesIO(png_bytes(mask, "MASK")))).tolist() == [[0, 255], [64, 191]]
    server = connected(registry)
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "m.png"}},
                "2": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 1]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    plan = Plan(prompt=workflow, order=["1", "2", "3"], outputs=["3"])
    split = split_plan(plan, registry, server.names - {"LoadImage"}, dict.fromkeys(plan.order, True))
    remote = substitute(plan, split, ExecutionResult(prompt_id="p", status="success",
                                                     node_outputs={"1": [[None], [mask[None]]]}), lambda d, n: n)
    assert remote.prompt[remote.order[0]] == {"class_type": "LoadImageMask",
                                              "inputs": {"image": "nodeweaver_p_1_1.png", "channel": "red"}}
    with pytest.raises(RoutingError, match="which the server lacks"):
        split_plan(plan, registry, server.names - {"LoadImage", "LoadImageMask"}, dict.fromkeys(plan.order, True))


def test_a_nodeweaver_node_after_a_remote_only_node_is_refused(registry):
    server = connected(registry)
    workflow = {"1": {"class_type": "CaseConverter", "inputs": {"string": "fox", "mode": "UPPERCASE"}},
                "2": {"class_type": "TextTemplate", "inputs": {"template": "{x}", "values": ["1", 0]}},
                "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    plan = plan_of(registry, workflow)
    with pytest.raises(RoutingError, match="remote outputs cannot come back"):
        choose_route(plan, registry, [server])


def test_the_least_loaded_server_that_has_the_nodes_is_chosen(registry):
    busy = connected(registry, FakeClient(queue=5))
    idle = RemoteServer(url="http://idle:1", client=FakeClient(queue=0), backend=FakeRemote())
    read_catalog(idle, registry)
    lacking = RemoteServer(url="http://small:1", client=FakeClient(info={"PreviewAny": remote_catalog()[
        "PreviewAny"]}), backend=FakeRemote())
    read_catalog(lacking, registry)
    plan = plan_of(registry, MIXED)
    from engine.routing import _queue_load

    assert choose_route(plan, registry, [busy, lacking, idle], load=_queue_load).server is idle


# ---- routed runs through the service ------------------------------------------------------------------------
@pytest.fixture
def routed(registry, isolated_folders):
    from mcp_server.service import NodeWeaverService
    from runtime.settings import load_settings

    remote = FakeRemote()
    server = connected(registry, backend=remote)
    service = NodeWeaverService(registry, settings=load_settings(), remotes=[server])
    events: list[tuple[str, dict]] = []
    service.bus.subscribe(lambda e: events.append((e.type, e.data)))
    yield service, remote, server, events
    service.close()


def test_a_mixed_job_runs_here_then_there_as_one_run(routed):
    service, remote, _, events = routed
    job = service.run(MIXED, timeout=30)
    assert job.status == "success", job.error
    assert job.outputs == {"3": {"text": ["A FOX IN SNOW"]}}
    assert job.executed == ["1", "2", "3"]
    [sent] = remote.plans
    assert sent.prompt["2"]["inputs"]["string"] == "a fox in snow" and "1" not in sent.prompt
    mine = [(kind, data) for kind, data in events if data.get("prompt_id") == job.id]
    kinds = [kind for kind, _ in mine]
    assert kinds.count("execution_start") == 1 and kinds.count("execution_success") == 1
    assert kinds[0] == "execution_start" and kinds.index("execution_success") > kinds.index("executed")
    assert [d["node"] for k, d in mine if k == "executing" and d.get("node")] == ["1", "2", "3"]
    assert service.get_job(job.id).outputs == job.outputs  # in the history


def test_a_job_that_runs_here_stays_here_only_when_local_is_preferred(routed):
    service, remote, _, _ = routed
    workflow = {"1": {"class_type": "TextTemplate", "inputs": {"template": "hi {x}", "values": "x=you"}},
                "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    service.router.prefer = "local"
    job = service.run(workflow, timeout=30)
    assert job.status == "success" and remote.plans == []
    assert "hi you" in json.dumps(job.outputs)
    service.router.prefer = "remote"  # the default: what the server has runs there, fed from here
    job = service.run(workflow, timeout=30)
    assert job.status == "success" and [list(p.prompt) for p in remote.plans] == [["2"]]
    assert job.outputs == {"2": {"text": ["hi you"]}}


def test_a_server_down_fails_the_job_with_the_reason(routed):
    service, _, server, events = routed
    server.client.down = True
    service.refresh_comfyui()
    job = service.run(MIXED, timeout=30)  # its nodes are still known, so it validates
    assert job.status == "error"
    assert job.error["exception_type"] == "RoutingError" and "unreachable" in job.error["exception_message"]
    ends = [(kind, data) for kind, data in events if data.get("prompt_id") == job.id and kind.startswith("execution")]
    assert [kind for kind, _ in ends] == ["execution_start", "execution_error"]
    assert ends[1][1]["exception_message"] == job.error["exception_message"]


def test_cancel_reaches_the_remote_part(registry, isolated_folders):
    from mcp_server.service import NodeWeaverService
    from runtime.settings import load_settings

    remote = FakeRemote(block=True)
    service = NodeWeaverService(registry, settings=load_settings(), remotes=[connected(registry, backend=remote)])
    try:
        job = service.submit(MIXED)
        job_id = job["prompt_id"] if isinstance(job, dict) else job.id
        assert remote.started.wait(10)
        assert service.cancel_job(job_id)
        done = service.queue.wait(job_id, timeout=10)
        assert done.status == "interrupted" and remote.interrupted == [job_id]
    finally:
        service.close()


def test_refresh_over_http(routed):
    from fastapi.testclient import TestClient

    from mcp_server.http_app import create_app

    service, _, server, _ = routed
    server.client.info["MyRemoteNode"] = copy.deepcopy(server.client.info["CaseConverter"])
    with TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1:8188") as client:
        reply = client.post("/api/comfyui/refresh")
        assert reply.status_code == 200
        assert reply.json() == {"servers": [{"url": URL, "ok": True, "nodes": len(server.client.info),
                                             "error": None}]}
        assert client.get("/object_info/MyRemoteNode").status_code == 200


def test_refresh_without_servers_is_a_clear_refusal(service):
    from fastapi.testclient import TestClient

    from mcp_server.http_app import create_app

    with TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1:8188") as client:
        reply = client.post("/api/comfyui/refresh")
    assert reply.status_code == 400 and "no ComfyUI server is configured" in reply.text


# ---- end to end, against the ComfyUI stand-in (recorded from a real ComfyUI 0.3.64) --------------------------
@pytest.fixture
def standin():
    from fakes.comfyui_standin import ComfyUIStandin

    with ComfyUIStandin() as server:
        yield server


@pytest.mark.slow
def test_plan_and_run_on_a_comfyui_server(standin, isolated_folders):
    from conftest import run_cli
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(isolated_folders / "input" / "photo.png")
    done = run_cli("plan", "invert photo.png and save it", "--comfyui-url", standin.url, "--run")
    assert done.returncode == 0, done.stderr
    assert standin.calls["POST /prompt"] == 1  # prefer = remote by default: the server has every node
    sent = standin.submitted[0]["prompt"]
    assert {n["class_type"] for n in sent.values()} == {"LoadImage", "ImageInvert", "SaveImage"}
    # photo.png was only in our input folder: uploaded before the prompt, as ComfyUI's frontend does
    assert standin.uploads["photo.png"] == (isolated_folders / "input" / "photo.png").read_bytes()
    assert standin.upload_forms == [{"type": "input", "subfolder": "", "overwrite": "true"}]
    saved = list((isolated_folders / "output").rglob("*.png"))
    assert saved and all(str(p) in done.stdout for p in saved)  # fetched through /view, listed
    history = run_cli("history", "--json")
    [job] = json.loads(history.stdout)
    assert job["status"] == "success" and job["outputs"]


@pytest.mark.slow
def test_a_mixed_job_against_the_standin(standin, registry, isolated_folders):
    from PIL import Image

    from mcp_server.service import NodeWeaverService
    from runtime.settings import load_settings

    Image.new("RGB", (8, 8)).save(isolated_folders / "input" / "small.png")  # LoadImage validates it here

    settings = load_settings({"comfyui": {"urls": [standin.url]}})
    service = NodeWeaverService(registry, settings=settings)
    try:
        assert service.comfyui_status() == [{"url": standin.url, "ok": True, "nodes": 8, "error": None}]
        workflow = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
            "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "tiny_2x.safetensors"}},
            "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
            "4": {"class_type": "TextTemplate", "inputs": {"template": "fox_{n}", "values": "n=1"}},
            "5": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": ["4", 0]}}}
        job = service.run(workflow, timeout=60)
        assert job.status == "success", job.error
        [body] = standin.submitted
        assert body["prompt"]["5"]["inputs"]["filename_prefix"] == "fox_1" and "4" not in body["prompt"]
        assert "4" in job.executed and job.outputs
    finally:
        service.close()


def test_a_server_down_at_startup_is_a_warning_and_serve_still_starts(capsys, registry):
    from conftest import free_port

    from nodeweaver.cli import _activate_settings, _remote_servers, build_parser

    url = f"http://127.0.0.1:{free_port()}"
    args = build_parser().parse_args(["serve", "--comfyui-url", url])
    _activate_settings(args)
    [server] = _remote_servers(args, registry)
    assert server.error is not None and server.names == frozenset()
    assert f"warning: ComfyUI server {url} cannot be read" in capsys.readouterr().err
    from mcp_server.service import NodeWeaverService

    service = NodeWeaverService(registry, remotes=[server], start_worker=False)
    try:
        assert service.comfyui_status()[0]["ok"] is False
    finally:
        service.close()


@pytest.fixture
def standin_service(registry, isolated_folders):
    """A service routed to a stand-in that lacks ImageScaleBy (so that node runs here)."""
    from fakes.comfyui_standin import ComfyUIStandin

    from mcp_server.service import NodeWeaverService
    from runtime.settings import load_settings

    with ComfyUIStandin(drop_classes=("ImageScaleBy",)) as server:
        service = NodeWeaverService(registry, settings=load_settings({"comfyui": {"urls": [server.url]}}))
        try:
            yield service, server
        finally:
            service.close()


@pytest.mark.slow
def test_an_image_made_here_is_uploaded_and_read_there(standin_service, isolated_folders):
    import io

    import numpy as np
    from PIL import Image

    service, standin = standin_service
    Image.new("RGB", (4, 4), (10, 200, 30)).save(isolated_folders / "input" / "mine.png")
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "mine.png"}},
                "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                               "scale_by": 2.0}},
                "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["5", 0],
                                                                        "image": ["2", 0]}},
                "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "up"}},
                "5": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "tiny_2x.safetensors"}}}
    job = service.run(workflow, timeout=60)  # the upscaling runs there only; the scaling here only
    assert job.status == "success", job.error
    [body] = standin.submitted
    [(name, data)] = standin.uploads.items()
    assert name == f"nodeweaver_{job.id}_2_0.png"
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    assert pixels.shape == (8, 8, 3) and (pixels == [10, 200, 30]).all()  # scaled here, sent exactly
    assert body["prompt"]["3"]["inputs"]["image"] == ["nw_upload_2_0", 0]
    assert body["prompt"]["nw_upload_2_0"] == {"class_type": "LoadImage", "inputs": {"image": name}}
    assert {"1", "2"}.isdisjoint(body["prompt"]) and job.outputs


@pytest.mark.slow
def test_a_file_only_the_server_has_validates_and_runs_there(standin_service, isolated_folders):
    service, standin = standin_service
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},  # in its input folder
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}}}
    assert service.validate(workflow)["valid"]
    job = service.run(workflow, timeout=60)
    assert job.status == "success", job.error
    assert standin.submitted[0]["prompt"]["1"]["inputs"]["image"] == "example.png" and standin.uploads == {}
    nowhere = copy.deepcopy(workflow)
    nowhere["1"]["inputs"]["image"] = "missing.png"
    result = service.validate(nowhere)
    assert not result["valid"]
    [error] = result["errors"]
    assert error["node_id"] == "1" and "'missing.png' not found in the input folder" in error["details"]
    # with a copy here too, the server's file is used: nothing is uploaded over it
    from PIL import Image

    Image.new("RGB", (2, 2)).save(isolated_folders / "input" / "example.png")
    assert service.run(workflow, timeout=60).status == "success" and standin.uploads == {}


@pytest.mark.slow
def test_refresh_comfyui_over_mcp(standin_service):
    import asyncio

    from mcp import Client

    from mcp_server.mcp_app import build_mcp

    service, standin = standin_service
    standin.drop_classes.add("ImageScale")

    async def main():
        async with Client(build_mcp(service)) as client:
            return await client.call_tool("refresh_comfyui", {}), await client.call_tool("refresh_comfyui",
                                                                                         {"x": 1})

    result, refused = asyncio.run(main())
    assert not result.is_error
    assert result.structured_content == {"servers": [{"url": standin.url, "ok": True, "nodes": 6, "error": None}]}
    assert service.comfyui_status() == result.structured_content["servers"]  # 8 classes before, re-read
    assert refused.is_error and refused.structured_content["error"] == "invalid_arguments"


def test_refresh_comfyui_over_mcp_without_servers(service):
    import asyncio

    from mcp import Client

    from mcp_server.mcp_app import build_mcp

    async def main():
        async with Client(build_mcp(service)) as client:
            return await client.call_tool("refresh_comfyui", {})

    result = asyncio.run(main())
    assert result.is_error and result.structured_content["error"] == "comfyui_not_configured"
