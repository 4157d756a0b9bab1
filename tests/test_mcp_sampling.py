"""The MCP caller's own model as the planner's LLM (sampling/createMessage), and the provider order.

A scripted client answers the server's sampling requests; the plan must come from those answers. A client
that cannot sample gets the offline planner; a named or configured provider ranks above the caller's model.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading

import mcp_types as mt
import pytest
from conftest import REPO
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from mcp import Client

from agent.mcp_sampling import McpSamplingChatModel, SamplingError, parse_tool_calls
from mcp_server.mcp_app import build_mcp
from mcp_server.service import NodeWeaverService

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

MARK = "sampled by the client"
DRAFT = f'```python\nn1 = PrimitiveString(value="{MARK}")\nn2 = PreviewAny(source=n1.STRING)\n```\nShows a text.'
REQUEST = "show the text 'sampled by the client'"


@pytest.fixture(autouse=True)
def _no_server_provider(monkeypatch):
    monkeypatch.delenv("NODEWEAVER_PLANNER_PROVIDER", raising=False)


@pytest.fixture
def service():
    svc = NodeWeaverService()
    yield svc
    svc.close()


class ScriptedClient:
    """A client-side model: answers every sampling request with the draft, and keeps what it was asked."""

    def __init__(self, answer: str = DRAFT) -> None:
        self.answer = answer
        self.requests: list[mt.CreateMessageRequestParams] = []

    async def __call__(self, context, params: mt.CreateMessageRequestParams) -> mt.CreateMessageResult:
        self.requests.append(params)
        return mt.CreateMessageResult(role="assistant", content=mt.TextContent(type="text", text=self.answer),
                                      model="scripted-client-model", stop_reason="endTurn",
                                      _meta={"usage": {"input_tokens": 50, "output_tokens": 20}})


def _plan(service, client_kwargs: dict, arguments: dict) -> mt.CallToolResult:
    async def main():
        async with Client(build_mcp(service), **client_kwargs) as client:
            return await client.call_tool("plan_workflow", arguments)

    return asyncio.run(main())


# ---- through plan_workflow ----------------------------------------------------------------------------------
def test_a_client_that_samples_plans_with_its_own_model(service):
    script = ScriptedClient()
    result = _plan(service, {"mode": "legacy", "sampling_callback": script}, {"request": REQUEST})
    data = result.structured_content
    assert data["planner"] == "llm:mcp-sampling", data
    assert data["status"] in ("valid", "partial"), data["summary"]
    values = [n["inputs"].get("value") for n in data["workflow"].values()]
    assert MARK in values  # the workflow is the one the client's model wrote
    assert data["llm_calls"] == len(script.requests) >= 1
    assert data["tokens"] == 70 * len(script.requests)
    first = script.requests[0]
    assert REQUEST in json.dumps([m.model_dump(mode="json") for m in first.messages], ensure_ascii=False)
    assert first.system_prompt and "text form" in first.system_prompt
    assert first.max_tokens > 0 and first.model_preferences is not None


class ToolCallingClient(ScriptedClient):
    """First asks the server's planner for `get_node PrimitiveString` (natively when tools were sent, else as
    the fenced JSON block the prompt describes), then answers the draft."""

    async def __call__(self, context, params: mt.CreateMessageRequestParams):
        self.requests.append(params)
        if len(self.requests) > 1:
            return mt.CreateMessageResult(role="assistant", model="m", content=mt.TextContent(type="text",
                                                                                              text=DRAFT))
        if params.tools:
            return mt.CreateMessageResultWithTools(role="assistant", model="m", stop_reason="toolUse", content=[
                mt.ToolUseContent(type="tool_use", id="u1", name="get_node", input={"name": "PrimitiveString"})])
        block = '```json\n{"tool_calls": [{"name": "get_node", "arguments": {"name": "PrimitiveString"}}]}\n```'
        return mt.CreateMessageResult(role="assistant", model="m", content=mt.TextContent(type="text", text=block))


@pytest.mark.parametrize("native", [True, False], ids=["sampling-tools", "tools-in-prompt"])
def test_the_planners_tool_calls_go_through_the_clients_model(service, native):
    script = ToolCallingClient()
    caps = mt.SamplingCapability(tools=mt.SamplingToolsCapability()) if native else None
    result = _plan(service, {"mode": "legacy", "sampling_callback": script, "sampling_capabilities": caps},
                   {"request": REQUEST})
    data = result.structured_content
    assert data["planner"] == "llm:mcp-sampling" and data["status"] in ("valid", "partial"), data["summary"]
    calls = [t for t in data["trace"] if t.get("step") == "tool_call"]
    assert calls and calls[0]["tool"] == "get_node" and calls[0]["args"] == {"name": "PrimitiveString"}
    first, second = script.requests[0], script.requests[1]
    assert bool(first.tools) is native and ('{"tool_calls"' in (first.system_prompt or "")) is not native
    answered = json.dumps([m.model_dump(mode="json") for m in second.messages], ensure_ascii=False)
    assert "PrimitiveString" in answered and ("tool_result" in answered) is native


def test_a_client_without_sampling_gets_the_offline_planner(service):
    result = _plan(service, {"mode": "legacy"}, {"request": REQUEST})
    assert result.structured_content["planner"] == "offline"


def test_a_connection_without_a_back_channel_plans_offline(service):
    """A 2026-07-28 session declares sampling but cannot send a request back mid-call: offline, not a failure."""
    script = ScriptedClient()
    result = _plan(service, {"sampling_callback": script}, {"request": REQUEST})
    assert result.structured_content["planner"] == "offline" and not script.requests


def test_a_named_provider_ranks_above_the_callers_model(service):
    script = ScriptedClient()
    result = _plan(service, {"mode": "legacy", "sampling_callback": script},
                   {"request": REQUEST, "provider": "no-such-provider"})
    assert result.structured_content["planner"] == "llm:no-such-provider"
    assert result.structured_content["status"] == "provider_error" and not script.requests


def test_the_servers_configured_provider_ranks_above_the_callers_model(service, monkeypatch):
    monkeypatch.setenv("NODEWEAVER_PLANNER_PROVIDER", "configured-elsewhere")
    script = ScriptedClient()
    result = _plan(service, {"mode": "legacy", "sampling_callback": script}, {"request": REQUEST})
    assert result.structured_content["planner"] == "llm:configured-elsewhere" and not script.requests


def test_a_client_that_refuses_to_sample_gets_a_clear_provider_error(service):
    async def refuse(context, params):
        return mt.ErrorData(code=-1, message="the user declined")

    result = _plan(service, {"mode": "legacy", "sampling_callback": refuse}, {"request": REQUEST})
    data = result.structured_content
    assert data["planner"] == "llm:mcp-sampling" and data["status"] == "provider_error"
    assert "declined" in data["summary"] and data["errors"][0]["type"] == "sampling_failed"


# ---- the chat model on its own: tools natively and in the prompt ------------------------------------------
@tool
def search_nodes(words: str) -> str:
    """Search the node catalog by words."""
    return words


class _Session:
    """A stand-in session on a real event loop in another thread, as the planner sees the MCP session."""

    def __init__(self, answers: list) -> None:
        self.answers, self.calls = list(answers), []
        self.can_send_request = True

    async def create_message(self, messages, **kwargs):
        self.calls.append({"messages": messages, **kwargs})
        return self.answers.pop(0)


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_native_tool_use_round_trips_as_tool_use_and_tool_result_blocks(loop):
    answer = mt.CreateMessageResultWithTools(
        role="assistant", model="m", stop_reason="toolUse",
        content=[mt.TextContent(type="text", text="looking"),
                 mt.ToolUseContent(type="tool_use", id="t1", name="search_nodes", input={"words": "canny"})])
    session = _Session([answer, answer])
    model = McpSamplingChatModel(session=session, loop=loop, native_tools=True).bind_tools([search_nodes])
    reply = model.invoke([SystemMessage("plan"), HumanMessage("a canny controlnet")])
    assert reply.tool_calls == [{"name": "search_nodes", "args": {"words": "canny"}, "id": "t1",
                                 "type": "tool_call"}]
    sent = session.calls[0]
    assert sent["system_prompt"] == "plan" and [t.name for t in sent["tools"]] == ["search_nodes"]
    assert sent["tools"][0].input_schema["properties"]["words"]["type"] == "string"
    model.invoke([SystemMessage("plan"), HumanMessage("a canny controlnet"), reply,
                  ToolMessage("ControlNetApplyAdvanced", tool_call_id="t1")])
    second = session.calls[1]["messages"]
    assert [b.type for b in second[1].content_as_list] == ["text", "tool_use"]
    assert second[2].role == "user" and second[2].content_as_list[0].tool_use_id == "t1"


def test_without_native_tools_they_are_described_and_parsed_from_a_json_block(loop):
    text = 'I will look.\n```json\n{"tool_calls": [{"name": "search_nodes", "arguments": {"words": "wan"}}]}\n```'
    session = _Session([mt.CreateMessageResult(role="assistant", model="m",
                                               content=mt.TextContent(type="text", text=text))] * 2)
    model = McpSamplingChatModel(session=session, loop=loop).bind_tools([search_nodes])
    reply = model.invoke([SystemMessage("plan"), HumanMessage("wan image to video")])
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("search_nodes", {"words": "wan"})]
    sent = session.calls[0]
    assert "tools" not in sent and "search_nodes" in sent["system_prompt"] and '"tool_calls"' in sent["system_prompt"]
    model.invoke([SystemMessage("plan"), HumanMessage("wan image to video"), reply,
                  ToolMessage("WanImageToVideo", tool_call_id=reply.tool_calls[0]["id"])])
    later = session.calls[1]["messages"]
    assert [m.role for m in later] == ["user", "assistant", "user"]
    assert "Result of search_nodes" in later[2].content_as_list[0].text


def test_a_json_block_that_names_no_tool_stays_text():
    workflow = '```json\n{"1": {"class_type": "SaveImage", "inputs": {}}}\n```'
    assert parse_tool_calls(workflow, {"search_nodes"}) == []
    assert parse_tool_calls('```json\n[{"name": "search_nodes", "arguments": "{\\"words\\": \\"x\\"}"}]\n```',
                            {"search_nodes"})[0]["args"] == {"words": "x"}


def test_a_client_that_never_answers_times_out_instead_of_hanging(loop):
    class Silent(_Session):
        async def create_message(self, messages, **kwargs):
            await asyncio.sleep(3600)

    model = McpSamplingChatModel(session=Silent([]), loop=loop, timeout_s=0.2)
    with pytest.raises(SamplingError) as caught:
        model.invoke([HumanMessage("hello")])
    assert caught.value.kind == "sampling_timeout"


def test_calling_on_the_loops_own_thread_is_refused_not_deadlocked():
    async def main():
        model = McpSamplingChatModel(session=_Session([]), loop=asyncio.get_running_loop())
        with pytest.raises(SamplingError) as caught:
            model.invoke([HumanMessage("hello")])
        return caught.value.kind

    assert asyncio.run(main()) == "sampling_unavailable"


# ---- over stdio: `nodeweaver mcp` as a subprocess ---------------------------------------------------------
@pytest.mark.slow
def test_nodeweaver_mcp_over_stdio_plans_with_the_clients_model(tmp_path):
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {k: v for k, v in os.environ.items() if k != "NODEWEAVER_PLANNER_PROVIDER"}
    env.update(NODEWEAVER_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    params = StdioServerParameters(command=sys.executable, args=["-m", "nodeweaver.cli", "mcp"], env=env,
                                   cwd=str(REPO))
    script = ScriptedClient()

    async def main():
        async with stdio_client(params) as streams, \
                ClientSession(streams[0], streams[1], sampling_callback=script) as session:
            await session.initialize()
            sampled = await session.call_tool("plan_workflow", {"request": REQUEST})
        async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            offline = await session.call_tool("plan_workflow", {"request": REQUEST})
        return sampled, offline

    sampled, offline = asyncio.run(main())
    assert sampled.structured_content["planner"] == "llm:mcp-sampling" and script.requests
    assert MARK in [n["inputs"].get("value") for n in sampled.structured_content["workflow"].values()]
    assert offline.structured_content["planner"] == "offline"
