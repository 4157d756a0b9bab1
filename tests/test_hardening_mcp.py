"""Hardening of the MCP face: progress is never lost, tool schemas describe and bound every argument,
argument errors and crashes come back structured, and an oversized plan request is refused fast over stdio
while the server keeps answering."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import pytest
from conftest import REPO
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_server.mcp_app import build_mcp, register_workflow_tool
from mcp_server.service import RESERVED_TOOL_NAMES, NodeWeaverService, ServiceError, WorkflowTool
from nodeweaver import __version__

BUILT_IN = {"plan_workflow", "validate_workflow", "run_workflow", "search_nodes", "get_node", "get_job",
            "list_jobs", "cancel_job"}
TEXT_WF = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
           "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "world",
                                                               "delimiter": ", "}},
           "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}


def _one_node_chain(value: str) -> dict:
    return {"1": {"class_type": "PrimitiveString", "inputs": {"value": value}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


@pytest.fixture
def service():
    svc = NodeWeaverService()
    yield svc
    svc.close()


def _session(service: NodeWeaverService):
    return Client(build_mcp(service))


async def _run_collecting(client, workflow: dict) -> tuple[object, list[float]]:
    progress: list[float] = []

    async def on_progress(value, total, message):
        progress.append(value)

    result = await client.call_tool("run_workflow", {"workflow": workflow}, progress_callback=on_progress)
    return result, progress


# ---- 1. progress of a fast job ----------------------------------------------------------------------------
def test_progress_of_a_job_that_finishes_before_submit_returns(service):
    """The race made certain: submit returns only after the job has finished. Subscribing after submit saw
    nothing (and the executor does not even emit when nobody listens); subscribing first sees every node."""
    submit = service.submit

    def submit_then_wait(*args, **kwargs):
        job = submit(*args, **kwargs)
        service.queue.wait(job.id, timeout=30)
        return job

    service.submit = submit_then_wait

    async def main():
        async with _session(service) as client:
            return await _run_collecting(client, _one_node_chain("late"))

    result, progress = asyncio.run(main())
    assert not result.is_error and result.structured_content["status"] == "success"
    assert progress == [1, 2]


def test_every_run_gets_its_own_progress(service):
    """Many quick runs, some at once: each gets progress for its own nodes only."""
    async def main():
        async with _session(service) as client:
            sequential = [await _run_collecting(client, _one_node_chain(f"seq{i}")) for i in range(10)]
            together = await asyncio.gather(*(_run_collecting(client, _one_node_chain(f"par{i}"))
                                              for i in range(10)))
            return sequential + list(together)

    runs = asyncio.run(main())
    assert len(runs) == 20
    for result, progress in runs:
        assert not result.is_error and result.structured_content["outputs"]
        assert progress and max(progress) <= 2, progress


# ---- 9. schemas, hints, version ---------------------------------------------------------------------------
def test_tools_describe_bound_and_close_their_arguments(service):
    async def main():
        async with _session(service) as client:
            return client.server_info, {t.name: t for t in (await client.list_tools()).tools}

    info, tools = asyncio.run(main())
    assert info.name == "NodeWeaver" and info.version == __version__
    assert set(tools) >= BUILT_IN
    for name in BUILT_IN:
        tool = tools[name]
        schema = tool.input_schema
        assert schema.get("additionalProperties") is False, name
        for prop, spec in schema["properties"].items():
            assert spec.get("description"), f"{name}.{prop} has no description"
        assert tool.output_schema and tool.output_schema["type"] == "object", name
        hints = tool.annotations
        assert None not in (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint,
                            hints.open_world_hint), name
        assert tool.title, name
    assert tools["plan_workflow"].input_schema["properties"]["request"]["maxLength"] == \
        service.settings.server.max_plan_chars
    assert tools["list_jobs"].input_schema["properties"]["limit"]["maximum"] == 1000
    assert tools["get_job"].annotations.read_only_hint is True
    assert tools["cancel_job"].annotations.destructive_hint is True
    assert tools["run_workflow"].annotations.read_only_hint is False


def test_successful_results_match_the_declared_output_schemas(service):
    """The client checks structured content against each tool's output schema and raises on a mismatch."""
    async def main():
        async with _session(service) as client:
            ran = await client.call_tool("run_workflow", {"workflow": TEXT_WF})
            calls = [ran,
                     await client.call_tool("get_job", {"job_id": ran.structured_content["id"]}),
                     await client.call_tool("list_jobs", {"limit": 5}),
                     await client.call_tool("search_nodes", {"query": "invert image", "limit": 3}),
                     await client.call_tool("get_node", {"name": "ImageInvert"}),
                     await client.call_tool("validate_workflow", {"workflow": TEXT_WF}),
                     await client.call_tool("plan_workflow", {"request": "Invert the colors of nothere.png"}),
                     await client.call_tool("cancel_job", {"job_id": ran.structured_content["id"]})]
            return calls

    calls = asyncio.run(main())
    assert [c.is_error for c in calls] == [False] * len(calls)
    assert calls[0].structured_content["outputs"]["3"] == {"text": ["hello, world"]}
    assert calls[2].structured_content["jobs"][0]["id"] == calls[0].structured_content["id"]
    assert calls[4].structured_content["schema"]
    assert calls[6].structured_content["status"] == "question"
    assert calls[7].structured_content == {"cancelled": False}


def test_out_of_range_arguments_are_structured_errors(service):
    async def main():
        async with _session(service) as client:
            return (await client.call_tool("list_jobs", {"limit": 10**30}),
                    await client.call_tool("search_nodes", {"query": "x", "limit": 0}),
                    await client.call_tool("list_jobs", {"status": "sleeping"}),
                    await client.call_tool("get_job", {}))

    huge, zero, status, missing = asyncio.run(main())
    for result in (huge, zero, status, missing):
        assert result.is_error and result.structured_content["error"] == "invalid_arguments"
    assert huge.structured_content["details"] == [{"argument": "limit", "type": "less_than_equal",
                                                   "message": "Input should be less than or equal to 1000",
                                                   "bound": {"le": 1000}}]
    assert "limit" in huge.content[0].text and "1000" in huge.content[0].text
    assert zero.structured_content["details"][0]["bound"] == {"ge": 1}
    assert status.structured_content["details"][0]["argument"] == "status"
    assert missing.structured_content["details"][0] == {"argument": "job_id", "type": "missing",
                                                        "message": "Field required"}


def test_unknown_arguments_are_rejected(service):
    service.save_tool(WorkflowTool(name="greeter", description="Greets", workflow=TEXT_WF,
                                   params={"who": {"node": "1", "input": "value", "type": "string"}}))

    async def main():
        async with _session(service) as client:
            return (await client.call_tool("list_jobs", {"limit": 3, "sort": "oldest"}),
                    await client.call_tool("greeter", {"who": "Ada", "shout": True}),
                    await client.call_tool("greeter", {"who": "Ada"}))

    extra, extra_saved, fine = asyncio.run(main())
    assert extra.is_error and extra.structured_content["error"] == "invalid_arguments"
    problem = extra.structured_content["details"][0]
    assert problem["argument"] == "sort" and problem["type"] == "extra_forbidden"
    assert "limit, status" in problem["message"]
    assert extra_saved.is_error and extra_saved.structured_content["details"][0]["argument"] == "shout"
    assert not fine.is_error and fine.structured_content["outputs"]["3"] == {"text": ["Ada, world"]}


def test_a_bug_is_logged_and_answered_without_internals(service, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "list_jobs", broken)

    async def main():
        async with _session(service) as client:
            return await client.call_tool("list_jobs", {})

    with caplog.at_level(logging.ERROR, logger="mcp_server.mcp_app"):
        result = asyncio.run(main())
    assert result.is_error and result.structured_content["error"] == "internal_error"
    assert "secret" not in str(result.structured_content) and "secret" not in result.content[0].text
    logged = [r for r in caplog.records if r.name == "mcp_server.mcp_app"]
    assert logged and logged[0].exc_info and "secret internal detail" in str(logged[0].exc_info[1])


def test_saving_a_workflow_tool_again_replaces_it_and_builtins_stay(service):
    mcp = build_mcp(service)
    first = WorkflowTool(name="greeter", description="Greets", workflow=TEXT_WF,
                         params={"who": {"node": "1", "input": "value", "type": "string"}})
    second = WorkflowTool(name="greeter", description="Greets", workflow=TEXT_WF,
                          params={"greeting": {"node": "2", "input": "string_b", "type": "string",
                                               "description": "the 2nd word"}})
    for tool in (first, second):
        register_workflow_tool(mcp, service, service.save_tool(tool))
    with pytest.raises(ServiceError, match="NodeWeaver's own tools") as refused:
        service.save_tool(WorkflowTool(name="run_workflow", description="Clashes", workflow=TEXT_WF))
    assert refused.value.status == 409

    async def main():
        async with Client(mcp) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    tools = asyncio.run(main())
    assert list(tools["greeter"].input_schema["properties"]) == ["greeting"]
    assert tools["greeter"].input_schema["properties"]["greeting"]["description"] == "the 2nd word"
    assert "workflow" in tools["run_workflow"].input_schema["properties"]
    assert set(tools) - {"greeter"} == RESERVED_TOOL_NAMES  # the reserved names are exactly the built-ins


def test_outputs_resource_of_an_unknown_job_is_not_found(service):
    async def main():
        async with _session(service) as client:
            with pytest.raises(MCPError) as caught:
                await client.read_resource("nodeweaver://outputs/nope")
            return caught.value

    error = asyncio.run(main())
    assert "no job 'nope'" in str(error)


# ---- 2b. a huge plan request over stdio -------------------------------------------------------------------
@pytest.mark.slow
def test_huge_plan_request_over_stdio_is_refused_fast_and_the_server_keeps_answering(tmp_path):
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {**os.environ, "NODEWEAVER_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "nodeweaver.cli", "mcp"], env=env,
                                   cwd=str(REPO))

    async def main():
        async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            started = time.monotonic()
            refused = await session.call_tool("plan_workflow", {"request": "invert the image " * 600_000})
            seconds = time.monotonic() - started
            hits = await session.call_tool("search_nodes", {"query": "invert image"})
            return refused, seconds, hits

    refused, seconds, hits = asyncio.run(main())
    assert refused.is_error and refused.structured_content["error"] == "invalid_arguments"
    assert refused.structured_content["details"][0]["argument"] == "request"
    assert refused.structured_content["details"][0]["bound"] == {"max_length": 20_000}
    assert seconds < 30, f"a 10 MB request took {seconds:.1f} s to refuse"
    assert not hits.is_error and hits.structured_content["results"][0]["name"] == "ImageInvert"
