"""Server and queue behaviour as ComfyUI's own execution suite expects it: partial_execution_targets, partly
valid prompts, the final `executing` message only after the history is stored, progress_state messages for
the prompt's client only, and ComfyUI's launch flags on `nodeweaver serve`."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import free_port, run_cli

from mcp_server.http_app import ProgressStates, create_app
from mcp_server.service import NodeWeaverService
from nodeweaver.cli import _activate_settings, build_parser
from runtime.settings import activate, load_settings

# two outputs: "3" from "1"; "5" from "4", which also needs "1"
TWO_OUTPUTS = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "left"}},
               "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
               "4": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "right",
                                                                   "delimiter": "+"}},
               "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}}


def _workflow(tag: str, **changes: dict) -> dict:
    """TWO_OUTPUTS with a unique value (so nothing comes from the cache) and some nodes replaced."""
    wf = json.loads(json.dumps(TWO_OUTPUTS))
    wf["1"]["inputs"]["value"] = f"{tag} {time.time_ns()}"
    wf.update(changes)
    return wf


@contextlib.contextmanager
def _ws(server, client_id: str) -> Iterator:
    """A websocket client of this server, past its first (status) message."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{server.url.rsplit(':', 1)[1]}/ws?clientId={client_id}") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "status"
        yield ws


def _until_done(ws, prompt_id: str, http: httpx.Client | None = None) -> tuple[list[dict], dict | None]:
    """Messages up to this prompt's executing(null); with `http`, /history read the moment it arrives."""
    seen = []
    while True:
        message = json.loads(ws.recv(timeout=20))
        seen.append(message)
        data = message["data"]
        if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return seen, (http.get(f"/history/{prompt_id}").json() if http else None)


def _history(http: httpx.Client, prompt_id: str) -> dict:
    for _ in range(200):
        found = http.get(f"/history/{prompt_id}").json()
        if found:
            return found[prompt_id]
        time.sleep(0.05)
    raise AssertionError(f"{prompt_id} never reached the history")


def test_partial_execution_targets_run_only_the_named_outputs(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        reply = http.post("/prompt", json={"prompt": _workflow("p"), "partial_execution_targets": ["5"]})
        assert reply.status_code == 200, reply.text
        item = _history(http, reply.json()["prompt_id"])
        assert set(item["outputs"]) == {"5"} and item["status"]["status_str"] == "success"
        assert item["prompt"][4] == ["5"]
        # a non-output id is ignored, as in ComfyUI; the named output still runs alone
        reply = http.post("/prompt", json={"prompt": _workflow("q"), "partial_execution_targets": ["3", "4"]})
        assert set(_history(http, reply.json()["prompt_id"])["outputs"]) == {"3"}


def test_partial_execution_targets_naming_no_output_are_refused(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for targets in ([], ["4"], ["missing"]):
            reply = http.post("/prompt", json={"prompt": _workflow("e"), "partial_execution_targets": targets})
            assert reply.status_code == 400, (targets, reply.text)
            assert reply.json()["error"]["type"] == "prompt_no_outputs"


def test_partly_valid_prompt_runs_its_good_outputs_and_reports_the_bad(server):
    broken = {"4": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "delimiter": "+"}}}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        reply = http.post("/prompt", json={"prompt": _workflow("bad", **broken)})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert set(body["node_errors"]) == {"4"} and body["node_errors"]["4"]["dependent_outputs"] == ["5"]
        item = _history(http, body["prompt_id"])
        assert set(item["outputs"]) == {"3"} and item["status"]["status_str"] == "success"
        # every output invalid: refused, as before
        all_bad = _workflow("all", **broken)
        all_bad["3"]["inputs"]["source"] = ["4", 0]
        refused = http.post("/prompt", json={"prompt": all_bad})
        assert refused.status_code == 400 and set(refused.json()["node_errors"]) == {"4"}


def test_final_executing_message_comes_after_the_history_is_stored(server):
    with httpx.Client(base_url=server.url, timeout=30) as http, _ws(server, "hist") as ws:
        ids = [http.post("/prompt", json={"prompt": _workflow(f"h{n}"), "client_id": "hist"}).json()["prompt_id"]
               for n in range(3)]
        finals = []
        for prompt_id in ids:
            seen, history = _until_done(ws, prompt_id, http)
            assert prompt_id in history and set(history[prompt_id]["outputs"]) == {"3", "5"}
            finals += [m["data"]["prompt_id"] for m in seen
                       if m["type"] == "executing" and m["data"].get("node") is None]
    assert finals == ids  # exactly one executing(null) per prompt, none duplicated


def test_queue_announces_the_end_of_a_prompt_once_its_result_is_stored(service):
    """The job queue (not the websocket) sends executing(null), after the history write: a listener that
    reads the store at that moment finds the job finished, with its outputs."""
    found: dict[str, tuple[str, list[str]]] = {}

    def listen(event) -> None:
        if event.type == "executing" and event.data.get("node") is None:
            job = service.queue.store.get(event.data["prompt_id"])
            found[job.id] = (job.status, sorted(job.outputs))

    unsubscribe = service.bus.subscribe(listen)
    try:
        job = service.run(_workflow("store"), timeout=30)
    finally:
        unsubscribe()
    assert found.get(job.id) == ("success", ["3", "5"])


def test_progress_state_goes_only_to_the_prompts_client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http, _ws(server, "a") as ws_a, _ws(server, "b") as ws_b:
        id_a = http.post("/prompt", json={"prompt": _workflow("a"), "client_id": "a"}).json()["prompt_id"]
        id_b = http.post("/prompt", json={"prompt": _workflow("b"), "client_id": "b"}).json()["prompt_id"]
        seen_a, _ = _until_done(ws_a, id_a)
        seen_b, _ = _until_done(ws_b, id_b)
    states_a = [m["data"] for m in seen_a if m["type"] == "progress_state"]
    states_b = [m["data"] for m in seen_b if m["type"] == "progress_state"]
    assert states_a and states_b
    assert {s["prompt_id"] for s in states_a} == {id_a} and {s["prompt_id"] for s in states_b} == {id_b}
    last = states_a[-1]["nodes"]
    assert last["5"] == {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "5", "prompt_id": id_a,
                         "display_node_id": "5", "parent_node_id": None, "real_node_id": "5"}
    assert all(n["state"] in ("running", "finished") for s in states_a for n in s["nodes"].values())


def test_progress_states_follow_the_events():
    states = ProgressStates()
    assert states.update("execution_start", {"prompt_id": "p"}) is None
    assert states.update("execution_cached", {"prompt_id": "p", "nodes": ["1"]})["data"]["nodes"]["1"]["state"] \
        == "finished"
    running = states.update("executing", {"prompt_id": "p", "node": "2"})["data"]["nodes"]["2"]
    assert running["state"] == "running" and running["value"] == 0.0
    step = states.update("progress", {"prompt_id": "p", "node": "2", "value": 3, "max": 10})["data"]["nodes"]["2"]
    assert (step["value"], step["max"]) == (3.0, 10.0)
    failed = states.update("execution_error", {"prompt_id": "p", "node_id": "2"})["data"]["nodes"]
    assert failed["2"]["state"] == "error" and failed["1"]["state"] == "finished"
    assert states.update("executing", {"prompt_id": "p", "node": None}) is None
    assert states.update("executing", {"prompt_id": "p", "node": "9"})["data"]["nodes"].keys() == {"9"}


def test_history_without_parameters_is_the_whole_history(tmp_path):
    from fastapi.testclient import TestClient

    from engine.jobs import Job

    svc = NodeWeaverService(start_worker=False)
    try:
        ids = [svc.queue.store.insert(Job(id=f"old-{n:03}", number=-1, status="success", prompt={},
                                          created_at=time.time(), finished_at=time.time())).id for n in range(230)]
        with TestClient(create_app(svc, mount_mcp=False), base_url="http://127.0.0.1") as http:
            everything = http.get("/history").json()
            assert list(everything) == ids  # more than the 200 it used to stop at, oldest first
            assert http.get("/history", params={"offset": 0}).json() == everything
            assert list(http.get("/history", params={"offset": 225}).json()) == ids[225:]
            assert http.get("/history", params={"offset": 230}).json() == {}
    finally:
        svc.close()


def test_models_endpoints_list_folder_kinds_and_installed_files(isolated_folders):
    """ComfyUI's GET /models and /models/{folder}: the kinds, one kind's files, 404 for an unknown kind."""
    from fastapi.testclient import TestClient

    (isolated_folders / "models" / "upscale_models").mkdir()
    (isolated_folders / "models" / "upscale_models" / "4x-UltraSharp.pth").write_bytes(b"placeholder")
    (isolated_folders / "models" / "text_encoders").mkdir()
    (isolated_folders / "models" / "text_encoders" / "umt5.safetensors").write_bytes(b"placeholder")
    svc = NodeWeaverService(start_worker=False)
    try:
        with TestClient(create_app(svc, mount_mcp=False), base_url="http://127.0.0.1") as http:
            kinds = http.get("/models").json()
            assert {"checkpoints", "loras", "upscale_models", "text_encoders"} <= set(kinds)
            assert http.get("/models/upscale_models").json() == ["4x-UltraSharp.pth"]
            assert http.get("/models/clip").json() == ["umt5.safetensors"]  # ComfyUI's legacy name
            missing = http.get("/models/no_such_kind")
            assert missing.status_code == 404 and missing.json()["error"]["type"] == "unknown_model_folder"
    finally:
        svc.close()


# ---- ComfyUI launch flags -------------------------------------------------------------------------------
def _settings(*flags: str):
    try:
        return _activate_settings(build_parser().parse_args(["serve", *flags]))
    finally:
        activate(None)


def test_engine_flags_map_onto_settings():
    assert _settings("--cpu").engine.device == "cpu"
    assert _settings().engine.device is None
    lru = _settings("--cache-lru", "7").engine
    assert (lru.cache, lru.cache_lru_size) == ("lru", 7)
    assert _settings("--cache-lru", "0").engine.cache == "classic"  # ComfyUI's default: LRU only when N > 0
    assert _settings("--cache-none").engine.cache == "none"
    assert _settings("--cache-classic").engine.cache == "classic"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--cache-none", "--cache-classic"])


def test_cache_policy_reaches_the_executor(tmp_path):
    for flags, enabled, entries in ((["--cache-none"], False, None), (["--cache-lru", "3"], True, 3)):
        settings = _settings(*flags)
        svc = NodeWeaverService(start_worker=False, settings=settings)
        try:
            assert svc.executor.cache.enabled is enabled
            if entries is not None:
                assert svc.executor.cache.max_entries == entries
        finally:
            svc.close()


def test_folder_flags_and_extra_model_paths(tmp_path):
    pack_root = tmp_path / "conf" / "testing_nodes"
    pack_root.mkdir(parents=True)
    config = tmp_path / "conf" / "extra_model_paths.yaml"
    config.write_text("testing:\n    custom_nodes: testing_nodes\n"
                      "comfyui:\n    base_path: ../comfy\n    checkpoints: models/checkpoints/\n"
                      "    custom_nodes: |\n        a\n        b\n")
    settings = _settings("--output-directory", str(tmp_path / "out"), "--input-directory", str(tmp_path / "in"),
                         "--extra-model-paths-config", str(config))
    assert settings.output_dir == tmp_path / "out" and settings.input_dir == tmp_path / "in"
    assert _settings("--temp-directory", str(tmp_path / "tmp")).temp_dir == tmp_path / "tmp"
    assert _settings().temp_dir == load_settings().data_dir / "temp"
    assert settings.custom_nodes == [pack_root, tmp_path / "comfy" / "a", tmp_path / "comfy" / "b"]
    assert settings.comfyui_dir == tmp_path / "comfy"
    assert _settings("--extra-model-paths-config", str(config), "--disable-all-custom-nodes").custom_nodes == []
    assert load_settings().custom_nodes == []  # nothing leaked into the process's settings


def test_unreadable_extra_model_paths_is_a_clear_error(tmp_path):
    from runtime.errors import NodeWeaverError

    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    for path in (bad, tmp_path / "absent.yaml"):
        with pytest.raises(NodeWeaverError, match="extra"):
            _settings("--extra-model-paths-config", str(path))


@pytest.mark.slow
def test_bare_listen_binds_everywhere_so_it_needs_a_token():
    result = run_cli("serve", "--listen", "--port", str(free_port()))
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr and "--listen 127.0.0.1" in result.stderr
    assert "--cache-lru" in run_cli("serve", "--help").stdout


@pytest.mark.slow
def test_serve_stops_on_sigterm_while_a_websocket_client_is_connected(tmp_path):
    """A browser tab holding /ws open must not keep `nodeweaver serve` from stopping."""
    import os
    import signal
    import subprocess
    import sys

    from websockets.sync.client import connect

    port = free_port()
    env = {**os.environ, "NODEWEAVER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "nodeweaver.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                with httpx.Client() as http:
                    if http.get(f"http://127.0.0.1:{port}/system_stats").status_code == 200:
                        break
            except httpx.HTTPError:
                time.sleep(0.1)
        with connect(f"ws://127.0.0.1:{port}/ws?clientId=tab") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "status"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) is not None  # generous: it takes well under a second
    finally:
        if proc.poll() is None:
            proc.kill()
