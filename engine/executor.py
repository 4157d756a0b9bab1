"""The executor: runs a compiled Plan with ComfyUI's semantics, less overhead, and concurrent branches.

- Demand-driven: only what the outputs need runs; a node whose signature is cached does not run, and
  neither does anything upstream of it.
- Lazy inputs: `check_lazy_status` is asked (and re-asked) which lazy inputs it needs; only those run.
- List mapping: INPUT_IS_LIST / OUTPUT_IS_LIST as in ComfyUI's `_map_node_over_list`.
- Concurrency: ready nodes run on a thread pool; a node that is alone runs inline (no hand-off cost).
  NOT_THREAD_SAFE classes run one at a time, USES_GPU classes share one device lock, and third-party
  packs that do not declare THREAD_SAFE = True share one lock (ComfyUI ran them one at a time).
- Async node functions are awaited; per-node timeouts; interrupts between nodes and via check_interrupted().
- Nodes that can hang are abandonable: third-party nodes, and any node with a time limit, run on worker
  threads the scheduler can give up on (timeout, or an interrupt the node ignores); see `_Workers` and
  `_Run._wait` for why the scheduler, not the worker, holds the locks.
No recursion anywhere: 100,000-node chains run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import ctypes
import inspect
import itertools
import logging
import math
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from compiler.plan import Plan
from engine.cache import OutputCache
from engine.events import EventBus, timestamp_ms
from nodes.registry import NodeRegistry
from runtime.comfy_graph import ExecutionBlocker, GraphBuilder, is_link
from runtime.errors import NodeWeaverError
from runtime.progress import InterruptedExecution, NodeContext, current_node

log = logging.getLogger(__name__)
_unique = itertools.count()


class NodeExecutionError(Exception):
    """A node failed; carries the structured execution_error payload."""

    def __init__(self, payload: dict[str, Any]):
        self.payload = payload
        super().__init__(f"{payload.get('node_type')} (node {payload.get('node_id')}): "
                         f"{payload.get('exception_type')}: {payload.get('exception_message')}")


class ExecutionBlocked(Exception):
    """A node was fed an ExecutionBlocker that carries a message: the run fails with that message."""


class NodeTimeout(NodeWeaverError):
    """A node ran past its time limit (the per-class TIMEOUT or the server-wide node timeout)."""

    kind = "node_timeout"
    status = 504


class NodeAbandoned(BaseException):
    """Raised inside the thread of a node the scheduler gave up on (best effort, see `_Task.kill`).

    A BaseException, like KeyboardInterrupt, so that a node's own `except Exception` does not swallow it.
    """


_EXTRA_DATA_KINDS = frozenset({"AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"})  # hidden kinds from extra_data
_IDLE_EXIT_S = 30.0   # an idle worker thread leaves after this long
_POLL_S = 0.1         # how often a waiting scheduler looks at the interrupt flag
_LOCK_POLL_S = 0.02   # how often it retries a lock held by another run


class _Task:
    """One node call handed to a worker: its future, and who may still touch it (state under `lock`)."""

    __slots__ = ("fn", "args", "context", "future", "lock", "state", "thread")

    def __init__(self, fn: Any, args: tuple) -> None:
        self.fn, self.args = fn, args
        self.context = contextvars.copy_context()  # context variables cross into the worker
        self.future: cf.Future = cf.Future()
        self.lock = threading.Lock()
        self.state = "queued"  # queued | running | done | abandoned
        self.thread: threading.Thread | None = None

    def run(self) -> bool:
        """Run the call; False when it was abandoned while running (its thread then leaves the pool)."""
        with self.lock:
            if self.state != "queued":
                return True  # abandoned before it started: nothing ran, the thread is clean
            self.state = "running"
            self.thread = threading.current_thread()
        self.future.set_running_or_notify_cancel()
        try:
            outcome, failed = self.context.run(self.fn, *self.args), False
        except BaseException as exc:  # noqa: BLE001 - handed to the scheduler through the future
            outcome, failed = exc, True
        with self.lock:
            if self.state == "abandoned":
                return False
            self.state = "done"
        if failed:
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)
        return True

    def abandon(self, kill: bool) -> bool:
        """Give up on the call; with `kill`, raise NodeAbandoned in its thread. True when a thread was hit.

        Killing is CPython's PyThreadState_SetAsyncExc: the exception arrives when the thread next runs
        Python bytecode, so a node looping in Python stops; one blocked inside C code (a lock, a socket)
        stops only when that call returns. Either way the thread never serves another node.
        """
        with self.lock:
            was_running = self.state == "running"
            self.state = "abandoned"
            if not (kill and was_running and self.thread is not None and self.thread.ident is not None):
                return False
            hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident),
                                                             ctypes.py_object(NodeAbandoned))
        return hit == 1

    @property
    def alive(self) -> bool:
        """Whether the thread of an abandoned call is still inside it."""
        return self.thread is not None and self.thread.is_alive()


class _Workers:
    """Daemon worker threads for node calls, such that an abandoned call never reduces capacity.

    A thread pool (concurrent.futures) has a fixed number of threads: each hung node that is given up on
    keeps one for ever, and after `max_workers` of them nothing runs. Here a submit takes an idle thread or
    starts a new one, and a thread whose call was abandoned leaves the pool instead of coming back, so
    abandoned threads only cost their own memory. Idle threads are kept (up to `max_idle`) so that handing
    a node over costs a queue put, not a thread start; they leave after `_IDLE_EXIT_S` idle.
    """

    _STOP = object()

    def __init__(self, max_idle: int, name: str = "nodeweaver-node") -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0       # threads waiting for a task and not yet promised to one
        self._max_idle = max_idle
        self._name = name
        self._serial = itertools.count()
        self.started = 0     # threads ever started (observable: abandoned calls make it grow)
        self._threads: set[threading.Thread] = set()

    def submit(self, fn: Any, *args: Any) -> _Task:
        task = _Task(fn, args)
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
            else:
                self.started += 1
        self._tasks.put(task)
        if spawn:
            thread = threading.Thread(target=self._loop, name=f"{self._name}-{next(self._serial)}", daemon=True)
            with self._lock:
                self._threads = {t for t in self._threads if t.is_alive()}
                self._threads.add(thread)
            thread.start()
        return task

    def _loop(self) -> None:
        try:
            while True:
                try:
                    task = self._tasks.get(timeout=_IDLE_EXIT_S)
                except queue.Empty:
                    with self._lock:
                        if self._idle > 0:  # nobody promised a task to this thread: leave
                            self._idle -= 1
                            return
                    continue
                if task is self._STOP or not task.run():
                    return
                with self._lock:
                    if self._idle >= self._max_idle:
                        return
                    self._idle += 1
        except NodeAbandoned:
            log.debug("an abandoned node's thread stopped")  # the kill landed after the node returned

    def shutdown(self, wait: float = 0.0) -> None:
        """Let idle threads go (busy ones finish their call first); wait up to `wait` seconds for them to end,
        so a process that exits next does not tear down native libraries under a thread still leaving."""
        with self._lock:
            idle, self._idle = self._idle, 0
            threads = list(self._threads)
        for _ in range(idle):
            self._tasks.put(self._STOP)
        deadline = time.monotonic() + wait
        for thread in threads:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if thread is not threading.current_thread():
                thread.join(remaining)


@dataclass
class ExecutionResult:
    """What one run produced. `node_outputs` holds the in-memory values of every node that finished."""

    prompt_id: str
    status: str  # success | error | interrupted
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # ui outputs of output nodes
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    node_outputs: dict[str, list[list[Any]]] = field(default_factory=dict)
    seconds: float = 0.0

    def output_value(self, node_id: str, slot: int = 0) -> Any:
        """The first value of one output of a node (the usual non-list case)."""
        values = self.node_outputs[node_id][slot]
        return values[0] if len(values) == 1 else values


@dataclass
class _ClassInfo:
    cls: type
    function: str
    inputs: dict[str, tuple[str, bool]]  # name -> (type, lazy)
    hidden: dict[str, str]               # name -> hidden kind (PROMPT, UNIQUE_ID ...)
    lazy: frozenset[str]
    has_lazy_check: bool
    input_is_list: bool
    output_is_list: tuple[bool, ...]
    n_outputs: int
    is_changed: Any
    accepts_kwargs: bool
    lock: threading.Lock | None
    timeout: float | None
    trusted: bool  # a built-in pack: may run inline when alone (third-party nodes always run abandonable)
    keyed_by_id: bool = False  # UNIQUE_ID or NOT_IDEMPOTENT: the node id is part of the cache signature
    raw_links: frozenset[str] = frozenset()  # inputs declared rawLink: given the link itself, not its value
    output_node: bool = False


@dataclass(slots=True)
class _Called:
    """What the calls of one node returned before merging: one row per call (a tuple of output values,
    possibly links into an expansion, or an ExecutionBlocker), the expansions, and the ui."""

    rows: list[Any]
    expanded: list[bool]
    graphs: list[dict[str, Any]]
    ui: dict[str, list] | None
    error: ExecutionBlocker | None = None  # a blocker with a message reached this node


class _AsyncLoop:
    """One event loop thread per executor on which every async node function and check_lazy_status runs.

    The node's worker thread waits for its coroutine; while it awaits, other coroutines run, so async nodes
    overlap as in ComfyUI. The wait is sliced so that NodeAbandoned (timeout, ignored interrupt) lands in the
    waiting thread, which then cancels the coroutine.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="nodeweaver-async", daemon=True).start()
            return self._loop

    def run(self, coro: Any) -> Any:
        loop = self._ensure()
        context = contextvars.copy_context()  # the node's context (current_node, graph prefix) goes along
        done: cf.Future = cf.Future()
        holder: list[asyncio.Task] = []

        def start() -> None:
            task = loop.create_task(coro, context=context)
            holder.append(task)
            task.add_done_callback(lambda t: _settle(t, done))

        loop.call_soon_threadsafe(start)
        try:
            while True:
                try:
                    return done.result(timeout=_POLL_S)
                except cf.TimeoutError:
                    continue
        except NodeAbandoned:
            loop.call_soon_threadsafe(lambda: holder and holder[0].cancel())
            raise


def _settle(task: asyncio.Task, done: cf.Future) -> None:
    if task.cancelled():
        done.set_exception(InterruptedExecution("the node's coroutine was cancelled"))
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return ("d", tuple(sorted((str(k), _hashable(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("l", tuple(_hashable(v) for v in value))
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    try:
        hash(value)
    except TypeError:
        return ("r", repr(value))
    return (type(value).__name__, value)


class Executor:
    """Runs plans; holds the output cache and the thread pool across runs."""

    def __init__(self, registry: NodeRegistry, *, cache: OutputCache | None = None, bus: EventBus | None = None,
                 max_workers: int = 8, node_timeout: float | None = None, interrupt_grace: float = 1.0,
                 kill_abandoned: bool = True) -> None:
        """`node_timeout`: seconds any node may run, server-wide (a smaller per-class TIMEOUT wins).
        `interrupt_grace`: how long after an interrupt a node still running may take to notice it (through
        check_interrupted) before it is abandoned. `kill_abandoned`: raise NodeAbandoned in abandoned threads.
        """
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.bus = bus or EventBus()
        self.max_workers = max(1, max_workers)
        self.node_timeout = node_timeout
        self.interrupt_grace = interrupt_grace
        self.kill_abandoned = kill_abandoned
        self._workers = _Workers(max_idle=self.max_workers)
        self._class_info: dict[str, _ClassInfo] = {}
        self._class_locks: dict[str, threading.Lock] = {}
        self._device_lock = threading.Lock()
        self._legacy_lock = threading.Lock()
        self._interrupt = threading.Event()
        self.abandoned = 0  # node calls given up on (timeout or ignored interrupt), ever
        self._abandoned_tasks: list[_Task] = []
        self._stats_lock = threading.Lock()
        self._async = _AsyncLoop()

    # ---- control ------------------------------------------------------------------------------------
    slots = 1  # one job at a time: the engine's own threads run that job's independent branches

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running execution between nodes, inside nodes that check, and abandon the others (this
        executor runs one job at a time, so `prompt_id` needs no matching)."""
        self._interrupt.set()

    def shutdown(self, wait: float = 0.0) -> None:
        """Release the worker threads; with `wait`, give them that long to end (abandoned ones never do)."""
        self._workers.shutdown(wait)

    def stats(self) -> dict[str, int]:
        """Abandoned node calls: how many ever, how many are still running in their threads, threads started."""
        with self._stats_lock:
            self._abandoned_tasks = [t for t in self._abandoned_tasks if t.alive]
            running = len(self._abandoned_tasks)
        return {"abandoned": self.abandoned, "abandoned_running": running, "threads_started": self._workers.started}

    def _note_abandoned(self, task: _Task, node_id: str, class_type: str, why: str) -> None:
        killed = task.abandon(self.kill_abandoned)
        with self._stats_lock:
            self.abandoned += 1
            if task.alive:
                self._abandoned_tasks.append(task)
            total = self.abandoned
        log.warning("abandoned node %s (%s) after %s%s; %d node call(s) abandoned so far", node_id, class_type,
                    why, ", its thread was asked to stop" if killed else "", total)

    # ---- class facts -------------------------------------------------------------------------------------
    def _info(self, class_type: str) -> _ClassInfo:
        info = self._class_info.get(class_type)
        if info is not None:
            return info
        cls = self.registry.get_class(class_type)
        if cls is None:
            raise LookupError(f"node class {class_type!r} is not executable here (unknown or catalog-only)")
        spec = self.registry.spec(class_type)
        function = cls.FUNCTION
        params = inspect.signature(getattr(cls, function)).parameters.values()
        accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        lock = None
        if getattr(cls, "USES_GPU", False):
            lock = self._device_lock
        elif getattr(cls, "NOT_THREAD_SAFE", False):
            lock = self._class_locks.setdefault(class_type, threading.Lock())
        elif (not self.registry.pack_of(class_type).startswith("nodes.") and not getattr(cls, "THREAD_SAFE", False)
              and not inspect.iscoroutinefunction(getattr(cls, function))):
            lock = self._legacy_lock  # async functions run on the event loop: they may overlap, as in ComfyUI
        output_is_list = tuple(bool(x) for x in getattr(cls, "OUTPUT_IS_LIST", ())) or tuple(
            False for _ in spec.outputs)
        info = _ClassInfo(
            cls=cls, function=function,
            inputs={i.name: (i.type, i.lazy) for i in spec.inputs if i.section != "hidden"},
            hidden={i.name: i.type for i in spec.inputs if i.section == "hidden"},
            lazy=frozenset(i.name for i in spec.inputs if i.lazy),
            has_lazy_check=callable(getattr(cls, "check_lazy_status", None)),
            input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
            output_is_list=output_is_list, n_outputs=len(spec.outputs),
            is_changed=getattr(cls, "IS_CHANGED", None), accepts_kwargs=accepts_kwargs, lock=lock,
            timeout=getattr(cls, "TIMEOUT", None),
            trusted=self.registry.pack_of(class_type).startswith("nodes."),
            keyed_by_id="UNIQUE_ID" in {i.type for i in spec.inputs if i.section == "hidden"}
            or bool(getattr(cls, "NOT_IDEMPOTENT", False)),
            output_node=bool(getattr(cls, "OUTPUT_NODE", False)),
            raw_links=frozenset(i.name for i in spec.inputs if i.options.get("rawLink")),
        )
        self._class_info[class_type] = info
        return info

    # ---- signatures ------------------------------------------------------------------------------------
    def signatures(self, plan: Plan) -> dict[str, Any]:
        """Cache keys: class, literal inputs, upstream signatures and IS_CHANGED, in dependency order."""
        sigs: dict[str, Any] = {}
        for node_id in plan.order:
            sigs[node_id] = self.signature(node_id, plan.prompt[node_id], sigs)
        return sigs

    def signature(self, node_id: str, node: dict[str, Any], sigs: dict[str, Any]) -> Any:
        """One node's cache key, its inputs' sources already in `sigs`. Nodes that see their own id
        (UNIQUE_ID) or say NOT_IDEMPOTENT are keyed by id too, so two identical ones are never shared."""
        class_type = node["class_type"]
        info = self._info(class_type)
        parts = []
        for name, value in node["inputs"].items():
            if type(value) is list and len(value) == 2 and type(value[0]) is str and value[0] in sigs:
                parts.append((name, sigs[value[0]], value[1]))
            else:
                parts.append((name, _hashable(value)))
        parts.sort(key=lambda p: p[0])
        changed: Any = None
        if info.is_changed is not None:
            changed = self._is_changed(info, node["inputs"], node_id)
        return hash((class_type, tuple(parts), changed, node_id if info.keyed_by_id else None))

    def _is_changed(self, info: _ClassInfo, inputs: dict, node_id: str) -> Any:
        # as ComfyUI: only constants are known before the run, so linked inputs are given as None
        literals = {k: (None if is_link(v) else v) for k, v in inputs.items()}
        try:
            params = inspect.signature(info.is_changed).parameters
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                literals = {k: v for k, v in literals.items() if k in params}
            value = info.is_changed(**literals)
        except Exception as exc:
            log.debug("IS_CHANGED of node %s failed (%s): treated as changed", node_id, exc)
            return ("changed", next(_unique))
        if isinstance(value, float) and math.isnan(value):
            return ("changed", next(_unique))  # ComfyUI's convention for "always run"
        return _hashable(value)

    # ---- running -------------------------------------------------------------------------------------
    def execute(self, plan: Plan, *, prompt_id: str | None = None, extra_data: dict | None = None,
                node_timeout: float | None = None) -> ExecutionResult:
        """Run a plan to completion, failure or interrupt. Never raises for node failures."""
        run = _Run(self, plan, prompt_id or str(uuid.uuid4()), extra_data or {}, node_timeout)
        self._interrupt.clear()
        try:
            return run.go()
        finally:
            self._interrupt.clear()


@dataclass(slots=True)
class _Flight:
    """A node running on a worker: when it must be done by, and the lock taken for it."""

    node_id: str
    deadline: float
    lock: threading.Lock | None
    task: _Task
    timeout: float | None


class _Run:
    """The state of one execution: the scheduler loop lives here."""

    def __init__(self, executor: Executor, plan: Plan, prompt_id: str, extra_data: dict,
                 node_timeout: float | None) -> None:
        self.ex = executor
        self.plan = plan
        self.prompt = dict(plan.prompt)  # expansions add ephemeral nodes to this run's copy only
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.node_timeout = node_timeout
        self.bus = executor.bus
        self.emitting = bool(executor.bus._subscribers)
        self.results: dict[str, list[list[Any]]] = {}
        self.ui: dict[str, dict[str, Any]] = {}
        self.state: dict[str, str] = {}          # waiting | ready | running | done
        self.pending: dict[str, int] = {}        # deps still missing
        self.dependents: dict[str, list[str]] = {}
        self.lazy_asked: dict[str, set[str]] = {}
        self.result = ExecutionResult(prompt_id=prompt_id, status="success")
        self.in_flight: dict[cf.Future, _Flight] = {}
        self.blocked: list[str] = []             # ready, but their lock is held elsewhere
        self.failure: tuple[str, BaseException] | None = None
        self.interrupted_at: str | None = None
        self.interrupt_seen: float | None = None
        self.abandoned_nodes: set[str] = set()
        self.display: dict[str, str] = {}                  # ephemeral node -> the node shown for it
        self.parents: dict[str, str] = {}                  # ephemeral node -> the node that expanded into it
        self.expanding: dict[str, tuple[_Called, float]] = {}  # expanded, waiting for its result links
        self.extra_outputs: list[str] = []                 # output nodes that expansions added

    # -- helpers --
    def _emit(self, event: str, **data: Any) -> None:
        if self.emitting:
            self.bus.emit(event, prompt_id=self.prompt_id, **data)

    def _links(self, node_id: str, names: Any = None) -> list[str]:
        inputs = self.prompt[node_id]["inputs"]
        out = []
        for name, value in inputs.items():
            if names is not None and name not in names:
                continue
            if type(value) is list and len(value) == 2 and type(value[0]) is str:
                out.append(value[0])
        return out

    def go(self) -> ExecutionResult:
        start = time.perf_counter()
        self._emit("execution_start", timestamp=timestamp_ms())
        self.ready: list[str] = []
        try:
            self.sigs = self.ex.signatures(self.plan)
            if self.emitting:  # as ComfyUI: every node of the prompt whose outputs are cached, even none
                cached = [n for n in self.plan.order if self.ex.cache.contains(self.sigs[n])]
                self._emit("execution_cached", nodes=cached, timestamp=timestamp_ms())
            for out in self.plan.outputs:
                self._demand(out)
        except Exception as exc:  # a catalog-only node, or IS_CHANGED machinery failing
            return self._finish_error(None, exc, start)
        while self.in_flight or ((self.ready or self.blocked) and not self._stopping()):
            self._dispatch()
            if self.in_flight or (self.blocked and not self._stopping()):
                self._wait()
        return self._finish(start)

    def _stopping(self) -> bool:
        return self.failure is not None or self.interrupted_at is not None

    def _finish(self, start: float) -> ExecutionResult:
        self.result.node_outputs = self.results
        self.result.outputs = {n: self.ui[n] for n in (*self.plan.outputs, *self.extra_outputs) if n in self.ui}
        if self.failure is not None:
            node_id, exc = self.failure
            if isinstance(exc, InterruptedExecution):
                return self._finish_interrupted(node_id, start)
            return self._finish_error(node_id, exc, start)
        if self.interrupted_at is not None:
            return self._finish_interrupted(self.interrupted_at, start)
        self.result.seconds = time.perf_counter() - start
        self._emit("execution_success", timestamp=timestamp_ms())
        return self.result

    # -- handing nodes out --
    def _timeout(self, info: _ClassInfo) -> float | None:
        """The smallest of the class's TIMEOUT, this run's limit and the executor's (server-wide) limit."""
        limits = [t for t in (info.timeout, self.node_timeout, self.ex.node_timeout) if t]
        return min(limits) if limits else None

    def _dispatch(self) -> None:
        """Start what is ready (nodes that waited for a lock first), up to `max_workers` in flight."""
        if self.blocked:
            waiting, self.blocked = self.blocked, []
            for node_id in waiting:
                if self.ex._interrupt.is_set() and self.interrupted_at is None:
                    self.interrupted_at = node_id
                if self._stopping():
                    return
                self._start(node_id, self.ex._info(self.prompt[node_id]["class_type"]))
        while self.ready and not self._stopping() and len(self.in_flight) < self.ex.max_workers:
            node_id = self.ready.pop(0)
            if self.ex._interrupt.is_set():
                self.interrupted_at = node_id
                return
            if node_id in self.expanding:
                self._resolve(node_id)
                continue
            try:
                if not self._lazy_satisfied(node_id):
                    continue
            except BaseException as exc:  # noqa: BLE001 - check_lazy_status failed
                self.failure = (node_id, exc)
                return
            self._start(node_id, self.ex._info(self.prompt[node_id]["class_type"]))

    def _resolve(self, node_id: str) -> None:
        """An expanded node whose result links are all done: its outputs are what they point at."""
        called, seconds = self.expanding.pop(node_id)
        info = self.ex._info(self.prompt[node_id]["class_type"])
        try:
            outputs = self._merge(info, called)
        except (LookupError, TypeError, ValueError) as exc:  # a result link to a socket its node lacks
            self.failure = (node_id, exc)
            return
        self._finish_node(node_id, outputs, called.ui, seconds)

    def _start(self, node_id: str, info: _ClassInfo) -> None:
        """Run one node inline (a trusted node alone, without a time limit) or on an abandonable worker.

        The scheduler takes the node's lock (device, class or third-party lock) on the node's behalf and
        gives it back when the node finishes or is abandoned. Were the worker to hold it, a node that never
        returns would hold it for ever and every later node sharing it would block behind the dead thread.
        A node whose lock is busy waits in `blocked` and is retried; the scheduler never blocks on a lock.
        """
        lock = info.lock
        if lock is not None and not lock.acquire(blocking=False):
            self.blocked.append(node_id)
            return
        timeout = self._timeout(info)
        if info.trusted and timeout is None and not self.in_flight and not self.ready and not self.blocked:
            try:
                self._complete(node_id, self._run_node(node_id, info))
            except BaseException as exc:  # noqa: BLE001 - reported as execution_error
                self.failure = (node_id, exc)
            finally:
                if lock is not None:
                    lock.release()
            return
        task = self.ex._workers.submit(self._run_node, node_id, info)
        deadline = time.monotonic() + timeout if timeout else math.inf
        self.in_flight[task.future] = _Flight(node_id, deadline, lock, task, timeout)

    # -- waiting for nodes in flight --
    def _wait(self) -> None:
        """Wait for a node to finish, a deadline to pass or an interrupt, whichever comes first.

        The wait is cut into `_POLL_S` slices so an interrupt is seen even while every node in flight
        ignores it; after `interrupt_grace` (time for nodes that call check_interrupted to stop on their
        own) the rest are abandoned: their locks go back and the run ends as interrupted.
        """
        now = time.monotonic()
        deadline = min((f.deadline for f in self.in_flight.values()), default=math.inf)
        slice_s = _LOCK_POLL_S if self.blocked else _POLL_S
        wait_for = max(0.0, min(deadline - now, slice_s))
        if self.in_flight:
            done, _ = cf.wait(list(self.in_flight), timeout=wait_for, return_when=cf.FIRST_COMPLETED)
        else:
            done = set()
            time.sleep(wait_for)  # only nodes waiting for a lock another run holds
        for future in done:
            self._collect(future)
        self._expire()
        self._check_interrupt()

    def _collect(self, future: cf.Future) -> None:
        flight = self.in_flight.pop(future)
        if flight.lock is not None:
            flight.lock.release()
        try:
            produced = future.result()
        except BaseException as exc:  # noqa: BLE001 - the node's failure, reported as execution_error
            if self.failure is None:
                self.failure = (flight.node_id, exc)
            return
        self._complete(flight.node_id, produced)

    def _expire(self) -> None:
        now = time.monotonic()
        for future, flight in list(self.in_flight.items()):
            if flight.deadline <= now:
                self._abandon(future, f"its {flight.timeout:g} s time limit")
                if self.failure is None:
                    self.failure = (flight.node_id, NodeTimeout(f"node ran longer than its {flight.timeout:g} s limit"))

    def _check_interrupt(self) -> None:
        if not self.ex._interrupt.is_set() or not self.in_flight:
            return
        now = time.monotonic()
        if self.interrupt_seen is None:
            self.interrupt_seen = now
        if now - self.interrupt_seen < self.ex.interrupt_grace:
            return
        for future, flight in list(self.in_flight.items()):
            self._abandon(future, "an interrupt it did not act on")
            self.interrupted_at = self.interrupted_at or flight.node_id

    def _abandon(self, future: cf.Future, why: str) -> None:
        """Give up on a node in flight: its lock goes back now, whatever its thread still does."""
        flight = self.in_flight.pop(future)
        self.abandoned_nodes.add(flight.node_id)
        if flight.lock is not None:
            flight.lock.release()
        self.ex._note_abandoned(flight.task, flight.node_id, self.prompt[flight.node_id]["class_type"], why)

    # -- demand-driven scheduling --
    def _demand(self, root: str) -> None:
        stack = [root]
        while stack:
            node_id = stack.pop()
            if node_id in self.state:
                continue
            hit = self.ex.cache.get(self.sigs[node_id])
            if hit is not None:
                self.state[node_id] = "done"
                self.results[node_id] = hit.outputs
                if hit.ui is not None:
                    self.ui[node_id] = hit.ui
                    self._emit("executed", node=node_id, display_node=self._display(node_id), output=hit.ui)
                self.result.cached.append(node_id)
                self._release(node_id)
                continue
            info = self.ex._info(self.prompt[node_id]["class_type"])
            deps = {d for d in self._links(node_id, [n for n in self.prompt[node_id]["inputs"]
                                                     if n not in info.lazy])}
            self.state[node_id] = "waiting"
            missing = [d for d in deps if self.state.get(d) != "done"]
            self.pending[node_id] = len(missing)
            for dep in missing:
                self.dependents.setdefault(dep, []).append(node_id)
                stack.append(dep)
            if not missing:
                self.state[node_id] = "ready"
                self.ready.append(node_id)

    def _release(self, node_id: str) -> None:
        for dependent in self.dependents.pop(node_id, ()):
            self.pending[dependent] -= 1
            if self.pending[dependent] == 0 and self.state.get(dependent) == "waiting":
                self.state[dependent] = "ready"
                self.ready.append(dependent)

    def _lazy_satisfied(self, node_id: str) -> bool:
        """Ask check_lazy_status which lazy inputs it needs; demand those and wait, or go ahead."""
        info = self.ex._info(self.prompt[node_id]["class_type"])
        if not info.lazy or not info.has_lazy_check:
            if info.lazy:  # lazy inputs without a check: ComfyUI evaluates them all
                return self._wait_for(node_id, [n for n in info.lazy if n in self.prompt[node_id]["inputs"]])
            return True
        values = self._gather(node_id, info, allow_missing=True)
        instance = info.cls()
        wanted: list[str] = []
        try:
            for kwargs in self._calls(info, values):  # mapped over list inputs, as the function itself is
                needed = instance.check_lazy_status(**kwargs)
                if inspect.iscoroutine(needed):
                    needed = self.ex._async.run(needed)
                wanted.extend(n for n in (needed or []) if n in info.lazy and n not in wanted)
        except Exception as exc:
            raise NodeExecutionError(self._error_payload(node_id, exc)) from exc
        return self._wait_for(node_id, wanted)

    def _wait_for(self, node_id: str, names: list[str]) -> bool:
        asked = self.lazy_asked.setdefault(node_id, set())
        new = [n for n in names if n not in asked]
        asked.update(new)
        deps = {d for d in self._links(node_id, new) if self.state.get(d) != "done"}
        if not deps:
            return True
        self.state[node_id] = "waiting"
        self.pending[node_id] = len(deps)
        for dep in deps:
            self.dependents.setdefault(dep, []).append(node_id)
        for dep in deps:
            self._demand(dep)
        return False

    # -- one node --
    def _gather(self, node_id: str, info: _ClassInfo, allow_missing: bool = False) -> dict[str, list[Any]]:
        values: dict[str, list[Any]] = {}
        for name, value in self.prompt[node_id]["inputs"].items():
            if name not in info.inputs and not info.accepts_kwargs:
                continue
            if type(value) is list and len(value) == 2 and type(value[0]) is str and name not in info.raw_links:
                src = self.results.get(value[0])
                if src is None:
                    if allow_missing or name in info.lazy:
                        values[name] = [None]
                        continue
                    raise RuntimeError(f"input {name!r} of node {node_id} has no value yet")
                values[name] = src[value[1]] if value[1] < len(src) else [None]
            else:
                values[name] = [value]
        for name, kind in info.hidden.items():
            if kind == "PROMPT":
                values[name] = [self.plan.prompt]  # the prompt as sent, as ComfyUI: no expanded nodes
            elif kind == "DYNPROMPT":
                values[name] = [_DynamicPrompt(self)]
            elif kind == "EXTRA_PNGINFO":
                values[name] = [self.extra_data.get("extra_pnginfo")]
            elif kind == "UNIQUE_ID":
                values[name] = [node_id]
            elif name not in values and kind in _EXTRA_DATA_KINDS:
                values[name] = [self.extra_data.get(kind.lower())]
            # else a hidden socket with a type ("*",): an input only when the prompt fills it (ComfyUI's loops)
        return values

    def _run_node(self, node_id: str, info: _ClassInfo) -> tuple[_Called, float]:
        self._emit("executing", node=node_id, display_node=self._display(node_id))
        started = time.perf_counter()
        values = self._gather(node_id, info)
        interrupted = self.ex._interrupt.is_set
        token = current_node.set(NodeContext(self.prompt_id, node_id, self._progress,
                                             lambda: interrupted() or node_id in self.abandoned_nodes))
        try:
            called = self._call(node_id, info, values)  # the scheduler holds info.lock for this call
        except NodeExecutionError:
            raise
        except InterruptedExecution:
            raise
        except BaseException as exc:
            raise NodeExecutionError(self._error_payload(node_id, exc, values)) from exc
        finally:
            current_node.reset(token)
        if called.error is not None:
            blocked = ExecutionBlocked(f"Execution Blocked: {called.error.message}")
            raise NodeExecutionError(self._error_payload(node_id, blocked, values))
        return called, time.perf_counter() - started

    @staticmethod
    def _calls(info: _ClassInfo, values: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """The keyword sets to call the function with: ComfyUI's mapping of list inputs over calls."""
        if info.input_is_list:
            return [values]
        if not values:
            return [{}]
        length = max(len(v) for v in values.values())
        if any(len(v) == 0 for v in values.values()):
            length = 0
        return [{k: v[i if i < len(v) else -1] for k, v in values.items()} for i in range(length)]

    @staticmethod
    def _blocker_in(kwargs: dict[str, Any], input_is_list: bool) -> ExecutionBlocker | None:
        for value in kwargs.values():
            if isinstance(value, ExecutionBlocker):
                return value
            if input_is_list and isinstance(value, list):
                for item in value:
                    if isinstance(item, ExecutionBlocker):
                        return item
        return None

    def _call(self, node_id: str, info: _ClassInfo, values: dict[str, list[Any]]) -> _Called:
        """Call the node once per input set; a set holding a blocker is not called and yields the blocker."""
        called = _Called(rows=[], expanded=[], graphs=[], ui=None)
        for index, kwargs in enumerate(self._calls(info, values)):
            blocker = self._blocker_in(kwargs, info.input_is_list)
            if blocker is not None:
                if blocker.message is not None:
                    called.error = blocker
                    return called
                called.rows.append(blocker)
                called.expanded.append(False)
                continue
            GraphBuilder.set_default_prefix(node_id, index, 0)  # expansions get ids unique to this call
            result = getattr(info.cls(), info.function)(**kwargs)
            if inspect.iscoroutine(result):
                result = self.ex._async.run(result)
            expanded = False
            if isinstance(result, dict):
                if result.get("expand") is not None:
                    called.graphs.append(result["expand"])
                    expanded = True
                if result.get("ui"):
                    called.ui = called.ui or {}
                    for key, items in result["ui"].items():
                        called.ui.setdefault(key, []).extend(items if isinstance(items, list) else [items])
                result = result.get("result", ())
            if result is None:
                result = ()
            if isinstance(result, ExecutionBlocker):
                called.rows.append(result)
                called.expanded.append(False)
                continue
            if not isinstance(result, tuple | list):
                raise TypeError(f"{info.cls.__name__}.{info.function} must return a tuple, got {type(result).__name__}")
            if len(result) < info.n_outputs:
                raise TypeError(f"{info.cls.__name__}.{info.function} returned {len(result)} value(s) for "
                                f"{info.n_outputs} output(s)")
            called.rows.append(tuple(result))
            called.expanded.append(expanded)
        return called

    def _merge(self, info: _ClassInfo, called: _Called) -> list[list[Any]]:
        """One list of values per output; links of an expansion's result are replaced by what they point at."""
        outputs: list[list[Any]] = [[] for _ in range(info.n_outputs)]
        for row, expanded in zip(called.rows, called.expanded, strict=True):
            for slot in range(info.n_outputs):
                value = row if isinstance(row, ExecutionBlocker) else row[slot]
                if expanded and is_link(value):
                    outputs[slot].extend(self.results[value[0]][int(value[1])])
                elif (slot < len(info.output_is_list) and info.output_is_list[slot]
                      and not isinstance(value, ExecutionBlocker)):
                    outputs[slot].extend(value)
                else:
                    outputs[slot].append(value)
        return outputs

    def _complete(self, node_id: str, produced: tuple[_Called, float]) -> None:
        called, seconds = produced
        if called.graphs:
            try:
                self._expand(node_id, called, seconds)
            except Exception as exc:  # noqa: BLE001 - a bad expansion fails its node, reported as execution_error
                self.failure = (node_id, exc)
            return
        info = self.ex._info(self.prompt[node_id]["class_type"])
        self._finish_node(node_id, self._merge(info, called), called.ui, seconds)

    def _finish_node(self, node_id: str, outputs: list[list[Any]], ui: dict | None, seconds: float) -> None:
        self.results[node_id] = outputs
        self.result.executed.append(node_id)
        self.result.timings[node_id] = seconds
        if ui is not None:
            self.ui[node_id] = ui
            self._emit("executed", node=node_id, display_node=self._display(node_id), output=ui)
        self.ex.cache.put(self.sigs[node_id], outputs, ui)
        self.state[node_id] = "done"
        self._release(node_id)

    # -- node expansion --
    def _display(self, node_id: str) -> str:
        return self.display.get(node_id, node_id)

    def _expand(self, node_id: str, called: _Called, seconds: float) -> None:
        """Add the expansion's nodes to this run (ephemeral: shown as the expanding node), run what its
        result links and output nodes need, and come back to `node_id` to resolve its outputs after."""
        new: dict[str, dict[str, Any]] = {}
        for graph in called.graphs:
            for new_id, node in graph.items():
                if new_id in self.prompt or new_id in new:
                    raise ValueError(f"node expansion adds a duplicate node id {new_id!r}; use GraphBuilder "
                                     "so ids are unique and deterministic")
                if not isinstance(node, dict) or "class_type" not in node:
                    raise ValueError(f"expanded node {new_id!r} has no class_type")
                new[new_id] = node
        shown = self._display(node_id)
        for new_id, node in new.items():
            self.prompt[new_id] = {"class_type": node["class_type"], "inputs": dict(node.get("inputs") or {})}
            self.display[new_id] = node.get("override_display_id") or shown
            self.parents[new_id] = node_id
        self._sign(list(new))
        self.expanding[node_id] = (called, seconds)
        links = {row[slot][0] for row, expanded in zip(called.rows, called.expanded, strict=True) if expanded
                 for slot in range(len(row)) if is_link(row[slot])}
        unknown = [link for link in links if link not in self.prompt]
        if unknown:
            raise ValueError(f"node expansion result links to unknown node(s) {sorted(unknown)}")
        for new_id in new:
            if self.ex._info(self.prompt[new_id]["class_type"]).output_node:
                self.extra_outputs.append(new_id)
        missing = [link for link in links if self.state.get(link) != "done"]
        self.state[node_id] = "waiting"
        self.pending[node_id] = len(missing)
        for dep in missing:
            self.dependents.setdefault(dep, []).append(node_id)
        for dep in missing:
            self._demand(dep)
        for new_id in new:
            if new_id in self.extra_outputs:
                self._demand(new_id)
        if not missing:
            self.state[node_id] = "ready"
            self.ready.append(node_id)

    def _sign(self, new_ids: list[str]) -> None:
        """Signatures of expanded nodes in dependency order (Kahn's algorithm: no recursion)."""
        wanted = set(new_ids)
        deps: dict[str, set[str]] = {}
        users: dict[str, list[str]] = {}
        for new_id in new_ids:
            sources = set(self._links(new_id))
            absent = [src for src in sources if src not in self.prompt]
            if absent:
                raise ValueError(f"expanded node {new_id!r} links to unknown node(s) {sorted(absent)}")
            deps[new_id] = sources & wanted
            for src in deps[new_id]:
                users.setdefault(src, []).append(new_id)
        todo = [n for n in new_ids if not deps[n]]
        while todo:
            new_id = todo.pop()
            self.sigs[new_id] = self.ex.signature(new_id, self.prompt[new_id], self.sigs)
            for user in users.get(new_id, ()):
                deps[user].discard(new_id)
                if not deps[user]:
                    todo.append(user)
        unsigned = [n for n in new_ids if n not in self.sigs]
        if unsigned:
            raise ValueError(f"node expansion has a cycle through {sorted(unsigned)[:5]}")

    def _progress(self, value: float, total: float, prompt_id: str, node_id: str) -> None:
        if node_id not in self.abandoned_nodes:  # an abandoned node's thread may still report: drop it
            self._emit("progress", value=value, max=total, node=node_id)

    # -- endings --
    def _error_payload(self, node_id: str | None, exc: BaseException, values: dict | None = None) -> dict[str, Any]:
        if isinstance(exc, NodeExecutionError):
            return exc.payload
        class_type = self.prompt[node_id]["class_type"] if node_id else None
        if isinstance(exc, NodeWeaverError):  # an expected, explained refusal: one line is enough
            log.warning("node %s (%s) failed: %s: %s", node_id, class_type, exc.kind, exc)
        else:
            log.error("node %s (%s) failed:\n%s", node_id, class_type,
                      "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        hidden = self.ex._class_info[class_type].hidden if class_type in self.ex._class_info else {}
        inputs = {name: [_describe_value(v) for v in items[:4]]
                  for name, items in (values or {}).items() if name not in hidden}
        return {"prompt_id": self.prompt_id, "node_id": node_id, "node_type": class_type,
                "executed": list(self.result.executed), "exception_message": str(exc) or type(exc).__name__,
                "exception_type": type(exc).__name__, "traceback": [], "current_inputs": inputs,
                "current_outputs": {}}

    def _finish_error(self, node_id: str | None, exc: BaseException, start: float) -> ExecutionResult:
        payload = self._error_payload(node_id, exc)
        payload["executed"] = list(self.result.executed)
        self.result.status = "error"
        self.result.error = payload
        self.result.node_outputs = self.results
        self.result.seconds = time.perf_counter() - start
        if self.emitting:
            self.bus.emit("execution_error", **payload)
        return self.result

    def _finish_interrupted(self, node_id: str | None, start: float) -> ExecutionResult:
        class_type = self.prompt[node_id]["class_type"] if node_id else None
        self.result.status = "interrupted"
        self.result.error = {"node_id": node_id, "node_type": class_type, "exception_type": "InterruptedExecution",
                             "exception_message": "interrupted by the user"}
        self.result.node_outputs = self.results
        self.result.seconds = time.perf_counter() - start
        self._emit("execution_interrupted", node_id=node_id, node_type=class_type,
                   executed=list(self.result.executed))
        return self.result


class _DynamicPrompt:
    """ComfyUI's DYNPROMPT hidden input: the run's prompt including the nodes expansions added so far."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def get_node(self, node_id: str) -> dict[str, Any]:
        node = self._run.prompt.get(node_id)
        if node is None:
            raise KeyError(f"node {node_id!r} is not in this prompt")
        return node

    def has_node(self, node_id: str) -> bool:
        return node_id in self._run.prompt

    def all_node_ids(self) -> set[str]:
        return set(self._run.prompt)

    def get_original_prompt(self) -> dict[str, Any]:
        return self._run.plan.prompt

    def get_display_node_id(self, node_id: str) -> str:
        return self._run.display.get(node_id, node_id)

    def get_parent_node_id(self, node_id: str) -> str | None:
        return self._run.parents.get(node_id)

    def get_real_node_id(self, node_id: str) -> str:
        while node_id in self._run.parents:
            node_id = self._run.parents[node_id]
        return node_id


def _describe_value(value: Any) -> Any:
    """A short, JSON-safe description of an input value for error reports."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__}(shape={list(shape)}, dtype={getattr(value, 'dtype', '?')})"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
