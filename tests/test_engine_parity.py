"""The executor's ComfyUI semantics: ExecutionBlocker, node expansion, UNIQUE_ID cache keys, execution_cached,
and async nodes that overlap."""

from __future__ import annotations

import sys
import time

import pytest

from compiler import validate
from engine import EventBus, Executor


@pytest.fixture
def pack():
    return sys.modules["parity_nodes"]


def plan_of(reg, wf):
    result = validate(wf, reg)
    assert result.valid, result.errors
    return result.plan


def listening(reg):
    events = []
    bus = EventBus()
    bus.subscribe(events.append)
    return Executor(reg, bus=bus), events


# ---- ExecutionBlocker ---------------------------------------------------------------------------------------
def test_blocker_skips_consumers_and_output_node(reg):
    wf = {"b": {"class_type": "PBlock", "inputs": {"value": 5, "block": True}},
          "add": {"class_type": "PAdd", "inputs": {"a": ["b", 0], "b": 1}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["add", 0]}},
          "free": {"class_type": "PCollect", "inputs": {"value": 7}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success"
    assert "out" not in result.outputs  # fed a blocker: no ui
    assert result.outputs["free"] == {"values": [7]}
    assert type(result.node_outputs["add"][0][0]).__name__ == "ExecutionBlocker"


def test_blocker_blocks_only_its_entry_of_a_list(reg):
    wf = {"vals": {"class_type": "PMakeList", "inputs": {"value1": 1, "value2": 2, "value3": 3}},
          "cond": {"class_type": "PEquals", "inputs": {"a": ["vals", 0], "b": 2}},
          "b": {"class_type": "PBlock", "inputs": {"value": ["vals", 0], "block": ["cond", 0]}},
          "relist": {"class_type": "PMakeList", "inputs": {"value1": ["b", 0]}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["relist", 0]}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success"
    assert result.outputs["out"] == {"values": [1, 3]}


def test_blocker_with_message_is_an_execution_error(reg):
    ex, events = listening(reg)
    wf = {"b": {"class_type": "PBlock", "inputs": {"value": 5, "block": True, "message": "no entry"}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["b", 0]}}}
    result = ex.execute(plan_of(reg, wf))
    assert result.status == "error"
    assert result.error["node_id"] == "out"
    assert result.error["exception_type"] == "ExecutionBlocked"
    assert result.error["exception_message"] == "Execution Blocked: no entry"
    assert [e.data["exception_message"] for e in events if e.type == "execution_error"] == [
        "Execution Blocked: no entry"]


# ---- node expansion -----------------------------------------------------------------------------------------
def test_expansion_runs_the_subgraph_and_resolves_result_links(reg):
    ex, events = listening(reg)
    wf = {"e": {"class_type": "PExpandAdd", "inputs": {"a": 2, "b": 3}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["e", 0]}}}
    result = ex.execute(plan_of(reg, wf), prompt_id="p")
    assert result.status == "success", result.error
    assert result.outputs["out"] == {"values": [6]}
    executing = [e.data for e in events if e.type == "executing"]
    ephemeral = [d for d in executing if d["node"] not in wf]
    assert len(ephemeral) == 2 and all(d["display_node"] == "e" for d in ephemeral)
    assert all(d["node"].startswith("e.0.") for d in ephemeral)  # GraphBuilder ids under the expanding node


def test_nested_expansion_with_an_output_node(reg):
    wf = {"n": {"class_type": "PExpandNested", "inputs": {"a": 4}},
          "x": {"class_type": "PCollect", "inputs": {"value": ["n", 0]}},
          "y": {"class_type": "PCollect", "inputs": {"value": ["n", 1]}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success", result.error
    assert result.outputs["x"] == {"values": [15]}  # 4 + 10 + 1, two levels down
    assert result.outputs["y"] == {"values": [4]}   # a literal in the result, not a link
    inner_outputs = [n for n in result.outputs if n not in wf]
    assert len(inner_outputs) == 1 and result.outputs[inner_outputs[0]] == {"values": [15]}


def test_expansion_is_cached_by_its_resolved_outputs(reg):
    ex, events = listening(reg)
    wf = {"e": {"class_type": "PExpandAdd", "inputs": {"a": 1, "b": 1}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["e", 0]}}}
    ex.execute(plan_of(reg, wf))
    events.clear()
    again = ex.execute(plan_of(reg, wf))
    assert again.executed == [] and again.outputs["out"] == {"values": [3]}
    cached = next(e.data["nodes"] for e in events if e.type == "execution_cached")
    assert sorted(cached) == ["e", "out"]


def test_duplicate_expansion_ids_fail_cleanly(reg):
    wf = {"vals": {"class_type": "PMakeList", "inputs": {"value1": 1, "value2": 2}},
          "e": {"class_type": "PExpandDuplicate", "inputs": {"a": ["vals", 0]}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["e", 0]}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "error" and result.error["node_id"] == "e"
    assert "duplicate node id 'fixed'" in result.error["exception_message"]


def test_expansion_nests_many_levels(reg):
    wf = {"c": {"class_type": "PCountdown", "inputs": {"n": 40}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["c", 0]}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success", result.error
    assert result.outputs["out"] == {"values": [40]}
    assert len(result.executed) == 2 + 40 * 2  # every level: one PCountdown and one PAdd


def test_raw_link_dynprompt_and_filled_hidden_socket(reg):
    wf = {"a": {"class_type": "PAdd", "inputs": {"a": 1, "b": 2}},
          "r": {"class_type": "PRawSource", "inputs": {"source": ["a", 0]}},
          "filled": {"class_type": "PRawSource", "inputs": {"source": ["a", 0], "extra": 9}},
          "o1": {"class_type": "PShowText", "inputs": {"text": ["r", 0]}},
          "o2": {"class_type": "PShowText", "inputs": {"text": ["filled", 0]}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success", result.error
    assert result.outputs["o1"] == {"text": ["a:0:PAdd:none"]}  # the link itself, the hidden socket left out
    assert result.outputs["o2"] == {"text": ["a:0:PAdd:9"]}


# ---- cache keys and execution_cached ------------------------------------------------------------------------
def test_unique_id_nodes_are_not_shared(reg, pack):
    pack.CALLS.update(PKeyed=0, PPlain=0)
    first = {"k1": {"class_type": "PKeyed", "inputs": {"value": 1}},
             "p1": {"class_type": "PPlain", "inputs": {"value": 1}},
             "o1": {"class_type": "PCollect", "inputs": {"value": ["k1", 0]}},
             "o3": {"class_type": "PCollect", "inputs": {"value": ["p1", 0]}}}
    second = {"k2": {"class_type": "PKeyed", "inputs": {"value": 1}},
              "p2": {"class_type": "PPlain", "inputs": {"value": 1}},
              "o2": {"class_type": "PCollect", "inputs": {"value": ["k2", 0]}},
              "o4": {"class_type": "PCollect", "inputs": {"value": ["p2", 0]}}}
    ex = Executor(reg)
    ex.execute(plan_of(reg, first))
    result = ex.execute(plan_of(reg, second))  # the same nodes under other ids
    assert pack.CALLS["PKeyed"] == 2 and "k2" in result.executed  # sees its id: never shared
    assert pack.CALLS["PPlain"] == 1 and "p2" not in result.executed  # does not: shared


def test_execution_cached_is_always_sent_before_cached_executed(reg):
    ex, events = listening(reg)
    wf = {"a": {"class_type": "PAdd", "inputs": {"a": 1, "b": 2}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["a", 0]}}}
    ex.execute(plan_of(reg, wf))
    first = [e for e in events if e.type == "execution_cached"]
    assert len(first) == 1 and first[0].data["nodes"] == []
    events.clear()
    ex.execute(plan_of(reg, wf))
    kinds = [e.type for e in events]
    assert kinds == ["execution_start", "execution_cached", "executed", "execution_success"]
    assert sorted(events[1].data["nodes"]) == ["a", "out"]


def test_check_lazy_status_is_asked_per_list_item(reg):
    wf = {"choices": {"class_type": "PMakeList", "inputs": {"value1": 0, "value2": 1}},
          "a": {"class_type": "PAdd", "inputs": {"a": 10, "b": 0}},
          "b": {"class_type": "PAdd", "inputs": {"a": 20, "b": 0}},
          "pick": {"class_type": "PLazyPick", "inputs": {"choose": ["choices", 0], "a": ["a", 0], "b": ["b", 0]}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["pick", 0]}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success", result.error
    assert result.outputs["out"] == {"values": [10, 20]}  # the second item needed `b`


def test_is_changed_gets_links_as_none_and_caches(reg, pack):
    pack.PChanged.SEEN.clear()
    wf = {"a": {"class_type": "PAdd", "inputs": {"a": 2, "b": 0}},
          "c": {"class_type": "PChanged", "inputs": {"value": ["a", 0], "k": 3}},
          "out": {"class_type": "PCollect", "inputs": {"value": ["c", 0]}}}
    ex = Executor(reg)
    assert ex.execute(plan_of(reg, wf)).outputs["out"] == {"values": [6]}
    again = ex.execute(plan_of(reg, wf))
    assert "c" not in again.executed and again.outputs["out"] == {"values": [6]}
    assert pack.PChanged.SEEN == [None, None]


# ---- async nodes --------------------------------------------------------------------------------------------
def test_async_nodes_overlap(reg, pack):
    pack.SPANS.clear()
    wf = {f"s{i}": {"class_type": "PAsyncSleep", "inputs": {"value": i, "seconds": 0.4}} for i in range(3)}
    wf.update({f"o{i}": {"class_type": "PCollect", "inputs": {"value": [f"s{i}", 0]}} for i in range(3)})
    started = time.monotonic()
    result = Executor(reg).execute(plan_of(reg, wf))
    elapsed = time.monotonic() - started
    assert result.status == "success", result.error
    assert [result.outputs[f"o{i}"] for i in range(3)] == [{"values": [i]} for i in range(3)]
    spans = sorted(pack.SPANS)
    assert len(spans) == 3 and spans[1][0] < spans[0][1] and spans[2][0] < spans[0][1]  # all three overlapped
    assert elapsed < 1.2  # serial would be 1.2 s or more (generous: liveness, not a benchmark)


def test_async_node_past_its_time_limit_is_abandoned(reg):
    wf = {"s": {"class_type": "PAsyncSleep", "inputs": {"value": 1, "seconds": 5.0}},
          "o": {"class_type": "PCollect", "inputs": {"value": ["s", 0]}}}
    ex = Executor(reg)
    started = time.monotonic()
    result = ex.execute(plan_of(reg, wf), node_timeout=0.3)
    assert result.status == "error" and result.error["exception_type"] == "NodeTimeout"
    assert time.monotonic() - started < 3.0
    again = ex.execute(plan_of(reg, {"s": {"class_type": "PAsyncSleep", "inputs": {"value": 2, "seconds": 0.0}},
                                     "o": {"class_type": "PCollect", "inputs": {"value": ["s", 0]}}}))
    assert again.outputs["o"] == {"values": [2]}  # the event loop still serves
