"""The executor: caching, lazy inputs, list mapping, concurrency, events, errors, interrupts, timeouts."""

from __future__ import annotations

import threading
import time

from compiler import validate
from engine import EventBus, Executor
from engine.cache import OutputCache


def plan_of(reg, wf):
    result = validate(wf, reg)
    assert result.valid, result.errors
    return result.plan


def add_chain():
    return {
        "a": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
        "b": {"class_type": "IntAdd", "inputs": {"a": ["a", 0], "b": 10}},
        "c": {"class_type": "IntAdd", "inputs": {"a": ["b", 0], "b": 100}},
        "side": {"class_type": "IntAdd", "inputs": {"a": ["a", 0], "b": 5}},
        "out": {"class_type": "ShowInt", "inputs": {"value": ["c", 0]}},
        "out2": {"class_type": "ShowInt", "inputs": {"value": ["side", 0]}},
    }


def test_second_run_executes_nothing_and_edits_rerun_exactly_downstream(reg):
    ex = Executor(reg)
    first = ex.execute(plan_of(reg, add_chain()))
    assert first.status == "success"
    assert sorted(first.executed) == ["a", "b", "c", "out", "out2", "side"]
    assert first.outputs == {"out": {"value": [111]}, "out2": {"value": [6]}}
    second = ex.execute(plan_of(reg, add_chain()))
    assert second.executed == [] and second.outputs == first.outputs
    edited = add_chain()
    edited["b"]["inputs"]["b"] = 20
    third = ex.execute(plan_of(reg, edited))
    assert sorted(third.executed) == ["b", "c", "out"]
    assert third.outputs["out"] == {"value": [121]}


def test_cache_can_be_turned_off_and_is_bounded(reg):
    ex = Executor(reg, cache=OutputCache(enabled=False))
    ex.execute(plan_of(reg, add_chain()))
    assert len(ex.execute(plan_of(reg, add_chain())).executed) == 6
    small = OutputCache(max_entries=2)
    ex = Executor(reg, cache=small)
    ex.execute(plan_of(reg, add_chain()))
    assert len(small) == 2


def test_volatile_node_always_runs(reg):
    wf = {"v": {"class_type": "Volatile", "inputs": {"value": 3}},
          "o": {"class_type": "ShowInt", "inputs": {"value": ["v", 0]}}}
    ex = Executor(reg)
    ex.execute(plan_of(reg, wf))
    assert sorted(ex.execute(plan_of(reg, wf)).executed) == ["o", "v"]


def test_lazy_switch_runs_only_the_chosen_branch(reg):
    wf = {
        "t": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 1}},
        "f": {"class_type": "Fail", "inputs": {"value": 0, "message": "the other branch ran"}},
        "s": {"class_type": "ComfySwitchNode", "inputs": {"switch": True, "on_true": ["t", 0], "on_false": ["f", 0]}},
        "o": {"class_type": "PreviewAny", "inputs": {"source": ["s", 0]}},
    }
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success", result.error
    assert "f" not in result.executed and "t" in result.executed
    assert result.outputs["o"] == {"text": ["2"]}
    wf["s"]["inputs"]["switch"] = False
    failed = Executor(reg).execute(plan_of(reg, wf))
    assert failed.status == "error" and failed.error["node_id"] == "f"


def test_list_mapping_and_async_nodes(reg):
    wf = {
        "r": {"class_type": "Range", "inputs": {"n": 4}},                     # [0, 1, 2, 3]
        "add": {"class_type": "IntAdd", "inputs": {"a": ["r", 0], "b": 10}},  # mapped: [10, 11, 12, 13]
        "dbl": {"class_type": "AsyncDouble", "inputs": {"value": ["add", 0]}},  # async, mapped
        "sum": {"class_type": "SumList", "inputs": {"values": ["dbl", 0]}},   # INPUT_IS_LIST
        "o": {"class_type": "ShowInt", "inputs": {"value": ["sum", 0]}},
    }
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success", result.error
    assert result.node_outputs["add"] == [[10, 11, 12, 13]]
    assert result.output_value("sum") == 92
    assert result.outputs["o"] == {"value": [92]}


def test_independent_waits_overlap(reg):
    wf = {"w1": {"class_type": "Wait", "inputs": {"seconds": 1.0, "value": 1}},
          "w2": {"class_type": "Wait", "inputs": {"seconds": 1.0, "value": 2}},
          "sum": {"class_type": "IntAdd", "inputs": {"a": ["w1", 0], "b": ["w2", 0]}},
          "o": {"class_type": "ShowInt", "inputs": {"value": ["sum", 0]}}}
    start = time.perf_counter()
    result = Executor(reg).execute(plan_of(reg, wf))
    wall = time.perf_counter() - start
    assert result.status == "success" and result.outputs["o"] == {"value": [3]}
    assert result.timings["w1"] >= 1.0 and result.timings["w2"] >= 1.0
    assert wall < result.timings["w1"] + result.timings["w2"]  # they ran at the same time, not one after the other


def test_undeclared_third_party_nodes_run_one_at_a_time(reg):
    import sys

    spans = sys.modules["engine_test_nodes"].SPANS
    spans.clear()
    wf = {"s1": {"class_type": "SlowLegacy", "inputs": {"seconds": 0.3, "value": 1}},
          "s2": {"class_type": "SlowLegacy", "inputs": {"seconds": 0.3, "value": 2}},
          "sum": {"class_type": "IntAdd", "inputs": {"a": ["s1", 0], "b": ["s2", 0]}},
          "o": {"class_type": "ShowInt", "inputs": {"value": ["sum", 0]}}}
    result = Executor(reg).execute(plan_of(reg, wf))
    assert result.status == "success" and len(spans) == 2
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert b_start >= a_end  # never at the same time


def test_events_follow_comfyui_names_and_order(reg):
    events = []
    bus = EventBus()
    bus.subscribe(events.append)
    wf = {"s": {"class_type": "Steps", "inputs": {"steps": 3, "delay": 0.0}},
          "o": {"class_type": "ShowInt", "inputs": {"value": ["s", 0]}}}
    ex = Executor(reg, bus=bus)
    ex.execute(plan_of(reg, wf), prompt_id="p1")
    kinds = [e.type for e in events]
    assert kinds[0] == "execution_start" and kinds[-1] == "execution_success"
    progress = [e.data for e in events if e.type == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [(1, 3, "s"), (2, 3, "s"), (3, 3, "s")]
    executed = next(e.data for e in events if e.type == "executed")
    assert executed == {"prompt_id": "p1", "node": "o", "display_node": "o", "output": {"value": [3]}}
    assert all(e.data["prompt_id"] == "p1" for e in events)
    events.clear()
    ex.execute(plan_of(reg, wf), prompt_id="p2")
    assert [e.type for e in events] == ["execution_start", "execution_cached", "executed", "execution_success"]


def test_failure_reports_execution_error_and_keeps_finished_results(reg):
    events = []
    bus = EventBus()
    bus.subscribe(events.append)
    wf = {"a": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}},
          "bad": {"class_type": "Fail", "inputs": {"value": ["a", 0], "message": "kaput"}},
          "o": {"class_type": "ShowInt", "inputs": {"value": ["bad", 0]}}}
    result = Executor(reg, bus=bus).execute(plan_of(reg, wf), prompt_id="p")
    assert result.status == "error"
    assert result.output_value("a") == 3
    err = next(e.data for e in events if e.type == "execution_error")
    assert (err["node_id"], err["node_type"], err["exception_type"], err["exception_message"]) == (
        "bad", "Fail", "ValueError", "kaput")
    assert err["current_inputs"] == {"value": [3], "message": ["kaput"]}
    assert err["traceback"] == [] and err["executed"] == ["a"]
    assert "execution_success" not in [e.type for e in events]


def test_interrupt_stops_between_nodes(reg):
    wf = {f"s{i}": {"class_type": "Steps", "inputs": {"steps": 5, "delay": 0.05}} for i in range(6)}
    for i in range(1, 6):
        wf[f"s{i}"]["inputs"]["steps"] = [f"s{i - 1}", 0]
    wf["o"] = {"class_type": "ShowInt", "inputs": {"value": ["s5", 0]}}
    ex = Executor(reg)
    timer = threading.Timer(0.3, ex.interrupt)
    timer.start()
    result = ex.execute(plan_of(reg, wf))
    timer.join()
    assert result.status == "interrupted"
    assert 0 < len(result.executed) < 7
    # the engine is usable again afterwards
    assert Executor(reg).execute(plan_of(reg, add_chain())).status == "success"


def test_node_timeout(reg):
    wf = {"w": {"class_type": "Wait", "inputs": {"seconds": 2.0, "value": 1}},
          "o": {"class_type": "ShowInt", "inputs": {"value": ["w", 0]}}}
    result = Executor(reg).execute(plan_of(reg, wf), node_timeout=0.2)
    assert result.status == "error"
    assert result.error["exception_type"] == "NodeTimeout" and result.error["node_id"] == "w"


def test_catalog_only_node_fails_cleanly(catalog_registry):
    wf = {"1": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = Executor(catalog_registry).execute(plan_of(catalog_registry, wf))
    assert result.status == "error" and "not executable here" in result.error["exception_message"]


def test_deep_chain_runs_without_recursion(reg):
    n = 5000
    wf = {"0": {"class_type": "PrimitiveInt", "inputs": {"value": 0}}}
    for i in range(1, n):
        wf[str(i)] = {"class_type": "IntAdd", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    wf["out"] = {"class_type": "ShowInt", "inputs": {"value": [str(n - 1), 0]}}
    ex = Executor(reg)
    result = ex.execute(plan_of(reg, wf))
    assert result.status == "success" and result.outputs["out"] == {"value": [n - 1]}
    assert ex.execute(plan_of(reg, wf)).executed == []


def test_model_cache_loads_once_and_reloads_on_change(tmp_path):
    from runtime.models import ModelCache

    path = tmp_path / "m.safetensors"
    path.write_bytes(b"one")
    cache = ModelCache()
    loads = []
    first = cache.load(path, lambda: loads.append(1) or object())
    assert cache.load(path, lambda: loads.append(1) or object()) is first and len(loads) == 1
    time.sleep(0.01)
    path.write_bytes(b"two!")
    second = cache.load(path, lambda: loads.append(1) or object())
    assert second is not first and len(loads) == 2 and len(cache.stats()) == 1
    assert cache.free(path) == 1 and cache.stats() == []


def test_model_cache_moves_models_and_parts_between_devices(tmp_path):
    from runtime.models import ModelCache

    class Part:
        def __init__(self):
            self.device = "cuda"

        def to(self, device):
            self.device = device
            return self

    path = tmp_path / "m.safetensors"
    path.write_bytes(b"w")
    cache = ModelCache()
    parts = cache.load(path, lambda: (Part(), Part()), kind="checkpoint", device="cuda")
    assert cache.stats()[0]["device"] == "cuda"
    cache.to_device(parts, "cpu")
    assert [p.device for p in parts] == ["cpu", "cpu"] and cache.stats()[0]["device"] == "cpu"
    assert cache.to_device(parts, "cuda") is parts and parts[0].device == "cuda"
