"""The planner's accounting and edits through the network faces: MCP plan_workflow and POST /api/plan.

A plan that leaves part of the request out is `partial` (not an error) and lists it; a given workflow is edited,
with the changes as a diff; both faces answer the same as the service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mcp import Client

from mcp_server.http_app import create_app
from mcp_server.mcp_app import build_mcp
from mcp_server.service import NodeWeaverService

BASE = json.loads((Path(__file__).resolve().parents[1] / "evals" / "suites" / "workflows" / "t2i_sd15.json")
                  .read_text(encoding="utf-8"))


@pytest.fixture
def service(isolated_folders):
    checkpoints = isolated_folders / "models" / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "v1-5-pruned-emaonly.safetensors").write_bytes(b"placeholder")
    svc = NodeWeaverService(start_worker=False)
    yield svc
    svc.close()


def _call(service: NodeWeaverService, tool: str, arguments: dict):
    async def main():
        async with Client(build_mcp(service)) as client:
            return await client.call_tool(tool, arguments)

    return asyncio.run(main())


def test_mcp_partial_plan_is_not_an_error_and_names_what_is_missing(service):
    result = _call(service, "plan_workflow", {"request": "a lighthouse at dusk, then make the background "
                                                         "transparent"})
    assert not result.is_error
    data = result.structured_content
    assert data["status"] == "partial" and data["partial"]
    assert [item["kind"] for item in data["not_covered"]] == ["remove_background"]
    assert "generate" in [item["kind"] for item in data["covered"]]
    assert "NOT COVERED" in result.content[0].text  # an agent reading only the text sees it too


def test_mcp_edits_a_given_workflow_with_a_diff(service):
    result = _call(service, "plan_workflow", {"request": "make it 4 images and use 30 steps", "workflow": BASE})
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["status"] == "valid"
    assert data["workflow"]["4"]["inputs"]["batch_size"] == 4 and data["workflow"]["5"]["inputs"]["steps"] == 30
    assert any("KSampler.steps: 20 → 30" in line for line in data["diff"])
    assert {item["kind"] for item in data["covered"]} == {"count", "sampling"}


def test_http_plan_edits_the_text_form_of_a_workflow(service):
    from compiler import format_text

    with TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1") as http:
        text = format_text(BASE, service.registry)
        reply = http.post("/api/plan", json={"request": "把采样步数改成25", "workflow": text})
        assert reply.status_code == 200, reply.text
        data = reply.json()
        assert data["status"] == "valid"
        [sampler] = [n for n in data["workflow"].values() if n["class_type"] == "KSampler"]
        assert sampler["inputs"]["steps"] == 25
        broken = http.post("/api/plan", json={"request": "make it 4 images", "workflow": "n1 = NoSuchNode("})
        assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_workflow_format"


def test_http_templates_are_searchable(service):
    with TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1") as http:
        found = http.get("/api/templates", params={"q": "inpaint", "limit": 3})
        assert found.status_code == 200
        rows = found.json()
        rows = rows.get("templates", rows) if isinstance(rows, dict) else rows
        assert rows and all("id" in row for row in rows)
