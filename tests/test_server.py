"""The network face with real clients: httpx, a websocket client, the MCP SDK client over streamable HTTP and
over stdio, and a ComfyUI client library from PyPI, unmodified."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import httpx
import pytest
from conftest import REPO, ServerThread, free_port, run_cli
from PIL import Image

from mcp_server.http_app import create_app

TOKEN = "s3cret-token"
TEXT_WF = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}, "_meta": {"title": "Text"}},
           "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "world",
                                                               "delimiter": ", "}},
           "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
IMAGE_WF = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}, "_meta": {"title": "Load Image"}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}}}


@pytest.fixture
def photo(isolated_folders):
    Image.new("RGB", (24, 16), (255, 0, 0)).save(isolated_folders / "input" / "photo.png")
    return isolated_folders


def test_comfyui_endpoints(server, photo):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        queued = http.post("/prompt", json={"prompt": TEXT_WF, "client_id": "c1"}).json()
        assert set(queued) == {"prompt_id", "number", "node_errors"}
        prompt_id = queued["prompt_id"]
        for _ in range(100):
            history = http.get(f"/history/{prompt_id}").json()
            if history:
                break
            time.sleep(0.05)
        item = history[prompt_id]
        assert item["outputs"]["3"] == {"text": ["hello, world"]}
        assert item["status"]["status_str"] == "success" and item["prompt"][1] == prompt_id
        assert prompt_id in http.get("/history").json()
        assert set(http.get("/queue").json()) == {"queue_running", "queue_pending"}
        info = http.get("/object_info").json()
        assert "KSampler" in info and info["PrimitiveString"]["input"]["required"]["value"][0] == "STRING"
        assert list(http.get("/object_info/SaveImage").json()) == ["SaveImage"]
        assert http.get("/system_stats").json()["devices"]
        upload = http.post("/upload/image", files={"image": ("up.png", (photo / "input" / "photo.png").read_bytes())},
                           data={"subfolder": "uploads"}).json()
        assert upload == {"name": "up.png", "subfolder": "uploads", "type": "input"}
        assert http.get("/view", params={"filename": "up.png", "subfolder": "uploads", "type": "input"}).content \
            == (photo / "input" / "photo.png").read_bytes()
        assert http.post("/interrupt").status_code == 200
        assert http.get("/docs").status_code == 200 and "/prompt" in http.get("/openapi.json").json()["paths"]


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        bad_json = http.post("/prompt", content=b"{nope", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 422
        invalid = http.post("/prompt", json={"prompt": {"1": {"class_type": "PreviewAny", "inputs": {}}}})
        body = invalid.json()
        assert invalid.status_code == 400 and body["node_errors"]["1"]["errors"][0]["type"] == "required_input_missing"
        assert http.post("/prompt", json={"prompt": 5}).status_code == 400
        unknown = http.get("/api/jobs/no-such-job")
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "job_not_found"
        traversal = http.get("/view", params={"filename": "../../../etc/passwd", "type": "output"})
        assert traversal.status_code == 403 and traversal.json()["error"]["type"] == "forbidden_path"
        assert http.get("/view", params={"filename": "x.png", "type": "secret"}).status_code == 400
        assert http.get("/object_info/NoSuchNode").status_code == 404
        evil = http.get("/queue", headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        rebinding = http.get("/queue", headers={"Host": "attacker.example"})
        assert rebinding.status_code == 403
        assert http.get("/queue").status_code == 200


def test_token_is_required_when_set(service):
    with ServerThread(create_app(service, token=TOKEN, mount_mcp=False), free_port()) as running, \
            httpx.Client(base_url=running.url) as http:
        assert http.get("/queue").status_code == 401
        assert http.get("/queue", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.slow
def test_serve_refuses_a_public_bind_without_token():
    proc = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), env={"NODEWEAVER_TOKEN": ""})
    assert proc.returncode == 2 and "without a token" in proc.stderr


def test_websocket_event_sequence(server, photo):
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{server.url.rsplit(':', 1)[1]}/ws?clientId=ws1") as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "status" and first["data"]["sid"] == "ws1"
        wf = json.loads(json.dumps(TEXT_WF))
        wf["1"]["inputs"]["value"] = f"ws {time.time()}"
        prompt_id = httpx.post(f"{server.url}/prompt", json={"prompt": wf, "client_id": "ws1"}).json()["prompt_id"]
        seen = []
        while not seen or seen[-1] != ("executing", None):
            message = json.loads(ws.recv(timeout=20))
            assert message["data"]["prompt_id"] == prompt_id
            seen.append((message["type"], message["data"].get("node")))
    kinds = [k for k, _ in seen]
    assert kinds[0] == "execution_start" and "execution_success" in kinds
    assert ("executed", "3") in seen and kinds.count("executing") == 4


def test_comfyui_client_library_unmodified(server, photo, tmp_path):
    from comfyuiclient import ComfyUIClient

    workflow_file = tmp_path / "workflow_api.json"
    workflow_file.write_text(json.dumps(IMAGE_WF))
    client = ComfyUIClient(server.url.removeprefix("http://"), str(workflow_file))
    client.connect()
    try:
        client.set_data(key="Load Image", image=Image.new("RGB", (20, 10), (0, 255, 0)))
        results = client.generate(["SaveImage"])
    finally:
        client.close()
    image = results["SaveImage"]
    assert image.size == (20, 10) and image.getpixel((0, 0))[:3] == (255, 0, 255)


def test_plan_and_workflow_tools_over_http(server, photo):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        planned = http.post("/api/plan", json={"request": "Load photo.png, invert its colors and save it",
                                               "run": True}).json()
        assert planned["status"] == "ran" and planned["job"]["status"] == "success"
        tool = {"name": "greeter", "description": "Greets someone", "workflow": TEXT_WF,
                "params": {"who": {"node": "1", "input": "value", "type": "string", "description": "who to greet"}}}
        assert http.post("/api/tools", json=tool).status_code == 200
        assert [t["name"] for t in http.get("/api/tools").json()] == ["greeter"]
        called = http.post("/api/tools/greeter", json={"who": "Ada"}).json()
        assert called["outputs"]["3"] == {"text": ["Ada, world"]}
        assert http.post("/api/tools/greeter", json={"nobody": 1}).status_code == 400
        bad_tool = dict(tool, name="Bad Name")
        assert http.post("/api/tools", json=bad_tool).status_code == 400


async def _mcp_session_checks(session) -> None:
    from mcp_types import ImageContent

    await session.initialize()
    names = {t.name for t in (await session.list_tools()).tools}
    assert {"plan_workflow", "validate_workflow", "run_workflow", "search_nodes", "get_node", "get_job",
            "list_jobs", "cancel_job"} <= names
    planned = await session.call_tool("plan_workflow", {"request": "Load photo.png, invert its colors and save it"})
    assert planned.structured_content["status"] == "valid"
    workflow = planned.structured_content["workflow"]
    for node in workflow.values():  # a fresh prefix: the output is made now, not reused from the cache
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = f"mcp{time.time_ns()}"
    checked = await session.call_tool("validate_workflow", {"workflow": {"1": {"class_type": "PreviewAny",
                                                                             "inputs": {}}}})
    assert checked.structured_content["valid"] is False
    assert checked.structured_content["errors"][0]["type"] == "required_input_missing"
    progress: list[float] = []

    async def on_progress(value, total, message):
        progress.append(value)

    ran = await session.call_tool("run_workflow", {"workflow": workflow}, progress_callback=on_progress)
    assert not ran.is_error and ran.structured_content["status"] == "success"
    images = [c for c in ran.content if isinstance(c, ImageContent)]
    assert images and images[0].mime_type == "image/png"
    assert progress
    hits = await session.call_tool("search_nodes", {"query": "反相 图片"})
    assert hits.structured_content["results"][0]["name"] == "ImageInvert"
    missing = await session.call_tool("get_job", {"job_id": "nope"})
    assert missing.is_error and missing.structured_content["error"] == "job_not_found"
    resources = {str(r.uri) for r in (await session.list_resources()).resources}
    assert {"nodeweaver://catalog", "nodeweaver://templates"} <= resources
    prompts = {p.name for p in (await session.list_prompts()).prompts}
    assert {"text_to_image", "repair_workflow"} <= prompts


def test_mcp_over_streamable_http(server, photo):
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main():
        async with streamable_http_client(f"{server.url}/mcp/") as streams, \
                ClientSession(streams[0], streams[1]) as session:
            await _mcp_session_checks(session)

    asyncio.run(main())


@pytest.mark.slow
def test_mcp_over_stdio(photo, tmp_path):
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {**os.environ, "NODEWEAVER_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "nodeweaver.cli", "mcp"], env=env,
                                   cwd=str(REPO))

    async def main():
        async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
            await _mcp_session_checks(session)

    asyncio.run(main())


def test_mcp_clarifying_question_uses_elicitation(server, photo):
    import mcp_types
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    asked: list[str] = []

    async def answer(context, params):
        asked.append(params.message)
        return mcp_types.ElicitResult(action="accept", content={"answer": "photo.png"})

    async def main():
        async with streamable_http_client(f"{server.url}/mcp/") as streams, \
                ClientSession(streams[0], streams[1], elicitation_callback=answer) as session:
            await session.initialize()
            return await session.call_tool("plan_workflow", {"request": "Invert the colors of holiday.png and save"})

    result = asyncio.run(main())
    assert asked and "holiday.png is not in the input folder" in asked[0] and "photo.png" in asked[0]
    assert result.structured_content["status"] == "valid"
    loads = [n for n in result.structured_content["workflow"].values() if n["class_type"] == "LoadImage"]
    assert loads[0]["inputs"]["image"] == "photo.png"


def test_saved_workflow_is_a_typed_mcp_tool(server, photo):
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    tool = {"name": "shouter", "description": "Joins a word with 'world'", "workflow": TEXT_WF,
            "params": {"word": {"node": "1", "input": "value", "type": "string", "description": "the first word"},
                       "times": {"node": "2", "input": "delimiter", "type": "string", "default": ", "}}}
    assert httpx.post(f"{server.url}/api/tools", json=tool, timeout=30).status_code == 200

    async def main():
        async with streamable_http_client(f"{server.url}/mcp/") as streams, \
                ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            listed = {t.name: t for t in (await session.list_tools()).tools}
            schema = listed["shouter"].input_schema
            assert schema["properties"]["word"]["type"] == "string" and schema["required"] == ["word"]
            return await session.call_tool("shouter", {"word": "Bo"})

    result = asyncio.run(main())
    assert not result.is_error and result.structured_content["outputs"]["3"] == {"text": ["Bo, world"]}
