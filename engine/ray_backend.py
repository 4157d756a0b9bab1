"""Ray backend: the API server keeps the job store and the ComfyUI API; plans run on Ray worker actors.

Each worker actor builds the node registry once (built-in packs, the same custom-node paths, catalogs) and
keeps one Executor, so its output cache and loaded models stay warm between jobs. GPU workers take one GPU
each (`num_gpus`); CPU workers are as many as asked. A job goes to an idle worker that already ran the
plan's model files (affinity), else to the least loaded one. The worker's events are buffered per job in
the actor and drained by the driver with a long poll, so they reach the bus in order; files the job wrote
come back as bytes through the object store and are written into this server's output folder (even when
the worker shares the file system: a remote machine must work the same way).

Faults: a worker that dies mid-job (RayActorError) is replaced and the job runs again on another worker,
up to `retries` times; after that it fails as `WorkerLost`, never lost and never stuck. Interrupts reach the
worker running the job: the actor is threaded (`max_concurrency`), so `interrupt` runs beside `execute`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from compiler.plan import Plan
from engine.cache import OutputCache
from engine.events import EventBus, ExecutionEvent
from engine.executor import ExecutionResult, Executor
from nodes.registry import NodeRegistry
from runtime.errors import NodeWeaverError
from runtime.folders import MODEL_EXTENSIONS, UnsafePathError, safe_join
from runtime.settings import Settings, activate, current

log = logging.getLogger(__name__)

POLL_S = 1.0                # longest an event poll waits in the actor before answering "nothing new"
INTERRUPT_RESEND_S = 0.5    # an interrupt is sent again while the job still runs (it may land before it starts)
STALE_EVENTS_S = 300.0      # event buffers of finished jobs nobody drained are dropped after this
MODELS_REMEMBERED = 64      # model files remembered per worker for affinity
_SCALARS = (str, int, float, bool, type(None))


class RayBackendError(NodeWeaverError):
    """The Ray cluster cannot be reached, or its workers cannot start (missing resources, a broken pack)."""

    kind = "ray_unavailable"
    status = 503


@dataclass(frozen=True)
class RegistrySpec:
    """What a worker needs to build the same registry as the server: picklable, unlike the registry."""

    custom_nodes: tuple[str, ...] = ()
    catalogs: tuple[str, ...] = ()  # /object_info files; catalog-only nodes validate but never run
    builtin: bool = True

    @classmethod
    def of(cls, settings: Settings, catalogs: tuple[str, ...] = ()) -> RegistrySpec:
        return cls(custom_nodes=tuple(str(p) for p in settings.custom_nodes), catalogs=tuple(catalogs))

    def build(self) -> NodeRegistry:
        registry = NodeRegistry()
        if self.builtin:
            registry.load_builtin_packs()
        if self.custom_nodes:
            registry.load_custom_nodes([Path(p) for p in self.custom_nodes])
        for catalog in self.catalogs:
            if Path(catalog).is_file():  # a remote machine may lack the file: its nodes only validate anyway
                registry.import_catalog_file(Path(catalog))
        return registry


def model_keys(plan: Plan) -> frozenset[str]:
    """The model files a plan names (literal inputs with a model file extension): the affinity key."""
    keys = set()
    for node in plan.prompt.values():
        for value in node.get("inputs", {}).values():
            if isinstance(value, str) and Path(value).suffix.lower() in MODEL_EXTENSIONS:
                keys.add(value)
    return frozenset(keys)


# ---- the worker actor ----------------------------------------------------------------------------------------
class RayWorker:
    """One Ray actor: a registry and a warm Executor; runs one job at a time, answers polls and interrupts
    beside it (the actor is threaded). Its output folder is a private scratch folder: files go back as bytes."""

    def __init__(self, spec: RegistrySpec, settings_data: dict[str, Any], index: int) -> None:
        scratch = Path(tempfile.mkdtemp(prefix=f"nodeweaver-ray-{index}-"))
        data = dict(settings_data, output_dir=str(scratch / "output"), temp_dir=str(scratch / "temp"))
        self.settings = Settings.model_validate(data)  # not Settings(**): the worker's env must not override
        activate(self.settings)
        self.index = index
        self.registry = spec.build()
        self.bus = EventBus()
        self.bus.subscribe(self._collect)
        engine = self.settings.engine
        cache = OutputCache(max_bytes=engine.output_cache_bytes, enabled=engine.cache != "none",
                            **({"max_entries": engine.cache_lru_size} if engine.cache_lru_size else {}))
        self.executor = Executor(self.registry, bus=self.bus, cache=cache, node_timeout=engine.node_timeout)
        self._cond = threading.Condition()
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._finished: dict[str, float] = {}
        self._current: str | None = None
        self._stopped: set[str] = set()

    def ready(self) -> dict[str, Any]:
        """The process id and the packs that failed to load (the driver reports them once)."""
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "load_errors": [str(e) for e in self.registry.load_errors]}

    def _collect(self, event: ExecutionEvent) -> None:
        prompt_id = event.data.get("prompt_id")
        with self._cond:
            self._events.setdefault(str(prompt_id), []).append({"type": event.type, "data": event.data})
            self._cond.notify_all()

    def execute(self, plan_data: dict[str, Any], prompt_id: str, extra_data: dict[str, Any],
                node_timeout: float | None) -> dict[str, Any]:
        with self._cond:
            self._drop_stale()
            self._events.setdefault(prompt_id, [])
            if prompt_id in self._stopped:  # interrupted before it started here
                self._stopped.discard(prompt_id)
                self._finished[prompt_id] = time.monotonic()
                self._cond.notify_all()
                return {"status": "interrupted", "error": _interrupted_error(), "pid": os.getpid()}
            self._current = prompt_id
        try:
            result = self.executor.execute(Plan.model_construct(**plan_data), prompt_id=prompt_id,
                                           extra_data=extra_data, node_timeout=node_timeout)
        finally:
            with self._cond:
                self._current = None
                self._finished[prompt_id] = time.monotonic()
                self._cond.notify_all()
        return {"status": result.status, "outputs": result.outputs, "executed": result.executed,
                "cached": result.cached, "timings": result.timings, "error": result.error,
                "seconds": result.seconds, "node_outputs": _scalar_outputs(result.node_outputs),
                "files": self._take_files(result.outputs), "pid": os.getpid()}

    def events(self, prompt_id: str, cursor: int, wait: float) -> tuple[list[dict[str, Any]], bool]:
        """Events of a job from `cursor` on, waiting up to `wait` seconds for one; True once the job ended
        here (its buffer is then dropped: the driver has everything)."""
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                events = self._events.get(prompt_id, [])
                done = prompt_id in self._finished
                remaining = deadline - time.monotonic()
                if len(events) > cursor or done or remaining <= 0:
                    break
                self._cond.wait(remaining)
            new = events[cursor:]
            if done:
                self._events.pop(prompt_id, None)
                self._finished.pop(prompt_id, None)
        return new, done

    def interrupt(self, prompt_id: str | None) -> None:
        with self._cond:
            if prompt_id is None or prompt_id == self._current:
                self.executor.interrupt(prompt_id)
            elif prompt_id not in self._finished:
                self._stopped.add(prompt_id)

    def _drop_stale(self) -> None:
        limit = time.monotonic() - STALE_EVENTS_S
        for prompt_id in [p for p, at in self._finished.items() if at < limit]:
            self._finished.pop(prompt_id, None)
            self._events.pop(prompt_id, None)
        if len(self._stopped) > 1000:
            self._stopped.clear()

    def _take_files(self, outputs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Every file the ui names in this worker's output or temp folder, read and removed here."""
        roots = {"output": self.settings.output_dir, "temp": self.settings.temp_dir}
        files = []
        for node_id, ui in outputs.items():
            for key, items in ui.items():
                for position, item in enumerate(items if isinstance(items, list) else []):
                    path = _file_of(item, roots)
                    if path is None:
                        continue
                    files.append({"node": node_id, "key": key, "index": position, "type": item["type"],
                                  "subfolder": item.get("subfolder") or "", "filename": item["filename"],
                                  "data": path.read_bytes()})
                    path.unlink()
        return files


def _file_of(item: Any, roots: dict[str, Path]) -> Path | None:
    if not (isinstance(item, dict) and item.get("type") in roots and isinstance(item.get("filename"), str)):
        return None
    try:
        path = safe_join(roots[item["type"]], os.path.join(item.get("subfolder") or "", item["filename"]))
    except UnsafePathError:
        return None
    return path if path.is_file() else None


def _scalar_outputs(node_outputs: dict[str, list[list[Any]]]) -> dict[str, list[list[Any]]]:
    """The node outputs that are plain values (text, numbers): a router may pass them on; tensors stay."""
    return {node: slots for node, slots in node_outputs.items()
            if all(isinstance(v, _SCALARS) for values in slots for v in values)}


def _interrupted_error() -> dict[str, Any]:
    return {"node_id": None, "node_type": None, "exception_type": "InterruptedExecution",
            "exception_message": "interrupted by the user"}


# ---- the driver side -----------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Slot:
    """One worker as the driver sees it: its actor, what it runs now, the model files it has run."""

    index: int
    actor: Any
    pid: int | None = None
    load: int = 0
    done: int = 0
    alive: bool = True
    models: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def remember(self, keys: frozenset[str]) -> None:
        for key in keys:
            self.models[key] = None
            self.models.move_to_end(key)
        while len(self.models) > MODELS_REMEMBERED:
            self.models.popitem(last=False)


class RayBackend:
    """A Backend whose plans run on Ray worker actors; `slots` is the number of workers."""

    def __init__(self, address: str | None = None, *, registry_spec: RegistrySpec | None = None,
                 settings: Settings | None = None, workers: int | None = None,
                 gpus_per_worker: float | None = None, bus: EventBus | None = None, retries: int = 1,
                 cpus_per_worker: float = 1.0, max_concurrency: int = 8, ready_timeout: float = 180.0,
                 runtime_env: dict[str, Any] | None = None) -> None:
        """`address`: a cluster ("auto", "ray://host:10001", "host:6379"), or None/"local" for a cluster of
        this machine (one Ray already initialised in this process is used as it is). `workers`: how many
        actors (default: one per GPU, else 1). `gpus_per_worker`: default 1 when the cluster has GPUs."""
        self.settings = settings or current()
        self.spec = registry_spec or RegistrySpec.of(self.settings)
        self.bus = bus or EventBus()
        self.retries = max(0, retries)
        self._owns_ray = _connect(address, runtime_env)
        self._gpus, count = _sizing(workers, gpus_per_worker)
        self._cpus = cpus_per_worker
        self._max_concurrency = max(2, max_concurrency)
        self._settings_data = self.settings.model_dump(mode="json")
        self._lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._serial = 0
        self._running: dict[str, _Slot] = {}
        self._interrupts: set[str] = set()
        self.replaced = 0  # workers replaced after dying, ever
        self._workers = [self._start() for _ in range(count)]
        self._wait_ready(self._workers, ready_timeout)
        self.slots = count

    # ---- workers ---------------------------------------------------------------------------------------
    def _start(self) -> _Slot:
        self._serial += 1
        options: dict[str, Any] = {"num_cpus": self._cpus, "num_gpus": self._gpus,
                                   "max_concurrency": self._max_concurrency, "max_restarts": 0}
        actor = ray.remote(RayWorker).options(**options).remote(self.spec, self._settings_data, self._serial)
        return _Slot(index=self._serial, actor=actor)

    def _wait_ready(self, slots: list[_Slot], timeout: float) -> None:
        try:
            infos = ray.get([s.actor.ready.remote() for s in slots], timeout=timeout)
        except GetTimeoutError:
            self.shutdown()
            raise RayBackendError(f"{len(slots)} Ray worker(s) did not start within {timeout:.0f}s: the cluster "
                                  f"lacks the resources ({self._cpus} CPU, {self._gpus} GPU each; it has "
                                  f"{ray.cluster_resources()})") from None
        except RayActorError as exc:
            self.shutdown()
            raise RayBackendError(f"a Ray worker failed to start: {exc}") from None
        for slot, info in zip(slots, infos, strict=True):
            slot.pid = info["pid"]
            for error in info["load_errors"]:
                log.warning("Ray worker %d: a node pack failed to load: %s", slot.index, error)

    def _replace(self, slot: _Slot, why: BaseException) -> None:
        """A worker died: forget it and start another in its place (it becomes ready in the background)."""
        with self._lock:
            if not slot.alive:
                return
            slot.alive = False
            fresh = self._start()
            self._workers[self._workers.index(slot)] = fresh
            self.replaced += 1
        log.warning("Ray worker %d (pid %s) was lost (%s); worker %d replaces it", slot.index, slot.pid,
                    type(why).__name__, fresh.index)
        ray.kill(slot.actor, no_restart=True)
        threading.Thread(target=self._note_pid, args=(fresh,), daemon=True).start()

    def _note_pid(self, slot: _Slot) -> None:
        try:
            slot.pid = ray.get(slot.actor.ready.remote())["pid"]
        except RayActorError as exc:
            log.warning("replacement Ray worker %d failed to start: %s", slot.index, exc)

    def _pick(self, keys: frozenset[str], tried: set[int]) -> _Slot:
        """Idle workers first; among them the one that ran most of the plan's model files, then the least
        used. A worker already tried for this job is taken only when no other exists."""
        with self._lock:
            live = [s for s in self._workers if s.alive]
            fresh = [s for s in live if s.index not in tried] or live
            slot = min(fresh, key=lambda s: (s.load > 0, -len(keys & s.models.keys()), s.load, s.done))
            slot.load += 1
            return slot

    # ---- Backend -----------------------------------------------------------------------------------------
    def execute(self, plan: Plan, *, prompt_id: str | None = None, extra_data: dict[str, Any] | None = None,
                node_timeout: float | None = None) -> ExecutionResult:
        prompt_id = prompt_id or str(uuid.uuid4())
        keys = model_keys(plan)
        plan_data = {"prompt": plan.prompt, "order": plan.order, "outputs": plan.outputs, "extra": plan.extra}
        tried: set[int] = set()
        started = [False]  # one execution_start per job, however many workers it took
        try:
            while True:
                slot = self._pick(keys, tried)
                try:
                    raw = self._run_on(slot, plan_data, prompt_id, extra_data or {}, node_timeout, started)
                except RayActorError as exc:
                    self._replace(slot, exc)
                    tried.add(slot.index)
                    if len(tried) > self.retries or prompt_id in self._interrupts:
                        return self._lost(prompt_id, exc, len(tried))
                    log.warning("job %s is run again on another worker (try %d)", prompt_id, len(tried) + 1)
                    continue
                finally:
                    with self._lock:
                        slot.load -= 1
                        self._running.pop(prompt_id, None)
                with self._lock:
                    slot.done += 1
                    slot.remember(keys)
                return self._result(prompt_id, raw)
        finally:
            with self._lock:
                self._interrupts.discard(prompt_id)

    def _run_on(self, slot: _Slot, plan_data: dict[str, Any], prompt_id: str, extra_data: dict[str, Any],
                node_timeout: float | None, started: list[bool]) -> dict[str, Any]:
        """Run on one worker, relaying its events in order until it ends; its raw result."""
        with self._lock:
            self._running[prompt_id] = slot
        done_ref = slot.actor.execute.remote(plan_data, prompt_id, extra_data, node_timeout)
        cursor, sent_interrupt = 0, 0.0
        while True:
            if prompt_id in self._interrupts and time.monotonic() - sent_interrupt > INTERRUPT_RESEND_S:
                slot.actor.interrupt.remote(prompt_id)
                sent_interrupt = time.monotonic()
            events, done = ray.get(slot.actor.events.remote(prompt_id, cursor, POLL_S))
            cursor += len(events)
            for event in events:
                if event["type"] == "execution_start":
                    if started[0]:
                        continue
                    started[0] = True
                self.bus.emit(event["type"], **event["data"])
            if done:
                break
        try:
            return ray.get(done_ref)
        except RayTaskError as exc:  # a bug in the worker, not a node failure: the job fails, the worker lives
            cause = exc.cause if exc.cause is not None else exc
            log.error("Ray worker %d failed job %s: %s", slot.index, prompt_id, exc)
            return {"status": "error", "error": {"prompt_id": prompt_id, "node_id": None, "node_type": None,
                                                 "exception_type": type(cause).__name__,
                                                 "exception_message": str(cause), "traceback": []}}

    def _result(self, prompt_id: str, raw: dict[str, Any]) -> ExecutionResult:
        outputs = raw.get("outputs") or {}
        for item in raw.get("files") or []:
            self._store_file(item, outputs)
        return ExecutionResult(prompt_id=prompt_id, status=raw["status"], outputs=outputs,
                               executed=raw.get("executed") or [], cached=raw.get("cached") or [],
                               timings=raw.get("timings") or {}, error=raw.get("error"),
                               node_outputs=raw.get("node_outputs") or {}, seconds=raw.get("seconds") or 0.0)

    def _lost(self, prompt_id: str, exc: BaseException, tries: int) -> ExecutionResult:
        error = {"prompt_id": prompt_id, "node_id": None, "node_type": None, "exception_type": "WorkerLost",
                 "exception_message": f"the Ray worker running this job died ({tries} time(s)): {exc}",
                 "traceback": [], "current_inputs": {}, "current_outputs": {}, "executed": []}
        self.bus.emit("execution_error", **error)
        return ExecutionResult(prompt_id=prompt_id, status="error", error=error)

    def _store_file(self, item: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Write one file from a worker into this server's folder, under a free name; the ui follows it."""
        root = self.settings.output_dir if item["type"] == "output" else self.settings.temp_dir
        try:
            folder = safe_join(root, item["subfolder"]) if item["subfolder"] else root
        except UnsafePathError as exc:
            log.warning("a worker returned a file outside the output folder: %s", exc)
            return
        with self._file_lock:
            path = _claim(folder, item["filename"])
        path.write_bytes(item["data"])
        entry = outputs.get(item["node"], {}).get(item["key"])
        if isinstance(entry, list) and item["index"] < len(entry) and isinstance(entry[item["index"]], dict):
            entry[item["index"]] = dict(entry[item["index"]], filename=path.name)

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop one job (None: every job running now); the driver keeps resending until the job ends."""
        with self._lock:
            targets = [prompt_id] if prompt_id else list(self._running)
            if len(self._interrupts) > 10_000:  # ids of jobs that never came here: forget them
                self._interrupts.intersection_update(self._running)
            self._interrupts.update(targets)
            reached = [(p, self._running[p]) for p in targets if p in self._running]
        for target, slot in reached:
            slot.actor.interrupt.remote(target)

    def worker_pid(self, prompt_id: str) -> int | None:
        """The process id of the worker running a job now (None when none does)."""
        with self._lock:
            slot = self._running.get(prompt_id)
            return slot.pid if slot is not None else None

    def workers(self) -> list[dict[str, Any]]:
        """Each worker: index, process, jobs running and done, model files remembered."""
        with self._lock:
            return [{"index": s.index, "pid": s.pid, "load": s.load, "done": s.done, "models": list(s.models)}
                    for s in self._workers]

    def shutdown(self, wait: float = 0.0) -> None:
        with self._lock:
            slots, self._workers = list(getattr(self, "_workers", [])), []
        for slot in slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except RayActorError:
                log.debug("Ray worker %d was already gone", slot.index)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()


def _connect(address: str | None, runtime_env: dict[str, Any] | None) -> bool:
    """Join (or start) a Ray cluster; True when this call started Ray in this process."""
    if ray.is_initialized():
        return False
    local = address in (None, "", "local")
    if not local:
        _probe(str(address))
    try:
        ray.init(address=None if local else address, include_dashboard=False if local else None,
                 runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayBackendError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a head that does not answer: Ray itself retries an unreachable address for minutes."""
    match = re.fullmatch(r"(?:ray://)?\[?(?P<host>[^\]/]+?)\]?:(?P<port>\d+)/?", address.strip())
    if match is None:  # "auto" and other forms Ray resolves itself
        return
    try:
        socket.create_connection((match["host"], int(match["port"])), timeout=timeout).close()
    except OSError as exc:
        raise RayBackendError(f"cannot reach the Ray head at {address!r}: {exc} (is `ray start --head` "
                              "running there, and the port open?)") from None


def _sizing(workers: int | None, gpus_per_worker: float | None) -> tuple[float, int]:
    """(GPUs per worker, number of workers): one worker per GPU unless told; CPU-only clusters get 1."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per = gpus_per_worker if gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    if workers is None:
        workers = int(gpus // per) if per > 0 else 1
    if workers < 1:
        raise RayBackendError(f"no Ray worker to start: {workers} asked ({gpus:g} GPU(s) in the cluster)")
    return per, workers


_COUNTED = re.compile(r"^(?P<prefix>.*)_(?P<n>\d{5,})_(?P<ext>\.[^.]*)?$")


def _claim(folder: Path, name: str) -> Path:
    """Create `folder/name`, or, when taken, the next free name: ComfyUI's prefix_NNNNN_ counter for names
    of that form, else name_1, name_2 … (O_EXCL: two writers never get the same file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _create(folder / name)
    if path is not None:
        return path
    match = _COUNTED.match(name)
    if match:
        prefix, ext = match["prefix"], match["ext"] or ""
        pattern = re.compile(re.escape(prefix) + r"_(\d{5,})_" + re.escape(ext) + "$")
        start = max((int(m.group(1)) for n in os.listdir(folder) if (m := pattern.match(n))), default=0)
        candidates = (f"{prefix}_{start + k:05d}_{ext}" for k in range(1, 1_000_000))
    else:
        stem, ext = os.path.splitext(name)
        candidates = (f"{stem}_{k}{ext}" for k in range(1, 1_000_000))
    for candidate in candidates:
        path = _create(folder / candidate)
        if path is not None:
            return path
    raise RayBackendError(f"no free file name for {name!r} in {folder}")


def _create(path: Path) -> Path | None:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return None
    return path
