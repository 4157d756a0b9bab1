"""Routing: each job runs where its nodes are, here, on a remote ComfyUI server, or in both (a mixed graph).

A job whose every node runs here goes to the local Executor (unless `prefer="remote"` and a server has them
all). Otherwise a server is chosen that has the job's remote nodes, the least loaded one; the nodes only
NodeWeaver has (LLMChat, DashScopeImageSynthesis, the text nodes) and everything upstream of them run here
first, and their values become literal inputs of the part sent to the server. So "Qwen writes the prompt,
my ComfyUI draws it" is one workflow. An IMAGE or MASK made here crosses as a PNG uploaded to the server and
read there by a LoadImage (LoadImageMask); an input file that only NodeWeaver's input folder has is uploaded
before the prompt is queued. Both parts' events reach one bus under the job's id, as one run (one
execution_start, one execution_success), and the job gets one ExecutionResult.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from compiler.plan import Plan
from engine.backends import Backend
from engine.events import EventBus, ExecutionEvent, timestamp_ms
from engine.executor import ExecutionResult
from nodes.registry import NodeRegistry, combo_choices
from runtime import folders
from runtime.comfy_graph import is_link
from runtime.errors import NodeWeaverError
from runtime.settings import ComfyUISettings

log = logging.getLogger(__name__)

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
SCALAR_TYPES = frozenset({"STRING", "INT", "FLOAT", "BOOLEAN", "COMBO", "*"})  # values that cross as literals
IMAGE_TYPES = frozenset({"IMAGE", "MASK"})
# how an image made here is read on the server: the loader class, its other inputs, and its output slot
LOADERS: dict[str, tuple[str, dict[str, Any]]] = {"IMAGE": ("LoadImage", {}),
                                                   "MASK": ("LoadImageMask", {"channel": "red"})}
UPLOADED_INPUTS = {"LoadImage": "image", "LoadImageMask": "image"}  # class -> its input-folder file input


class RoutingError(NodeWeaverError):
    """A job no backend can run as a whole or split: a node exists nowhere, or a value cannot cross."""

    kind = "routing_error"


@dataclass
class RemoteServer:
    """One ComfyUI server: its client (HTTP), its backend (runs plans there) and the node classes it has."""

    url: str
    client: Any
    backend: Backend | None  # None: read for its catalog only (nodes, validate), never routed to
    names: frozenset[str] = frozenset()
    error: str | None = None  # why its catalog could not be read (it is then never chosen)
    input_files: frozenset[str] = frozenset()  # the image files its input folder had (LoadImage's choices)

    @property
    def source(self) -> str:
        return f"comfyui:{self.url}"


@dataclass(frozen=True)
class Crossing:
    """A link from a node run here into a node run remotely: the value goes over as a literal."""

    node: str       # the remote node
    input: str      # its input
    source: str     # the local node
    slot: int
    type: str       # the local output's declared type


@dataclass
class Split:
    """Which of a plan's nodes run here and which on the server, in plan order."""

    local: list[str]
    remote: list[str]
    crossings: list[Crossing] = field(default_factory=list)


# ---- deciding where nodes run (pure) ------------------------------------------------------------------------
def runs_here(node: dict[str, Any], registry: NodeRegistry, cache: dict[str, dict] | None = None) -> bool:
    """Whether this installation can run a node: its class is executable here and every choice it names
    (a model file, an input image) is one of ours, not only a remote server's."""
    class_type = node.get("class_type", "")
    if not registry.is_executable(class_type):
        return False
    cache = cache if cache is not None else {}
    if class_type not in cache:
        try:
            cache[class_type] = registry.local_info(class_type).get("input", {})
        except Exception as exc:  # INPUT_TYPES failing: the node cannot run here either
            log.warning("cannot read %s's inputs: %s", class_type, exc)
            cache[class_type] = {}
    sections = cache[class_type]
    for name, value in node.get("inputs", {}).items():
        if is_link(value) or not isinstance(value, str):
            continue
        for section in ("required", "optional"):
            choices = combo_choices((sections.get(section) or {}).get(name))
            if choices is not None and value not in choices:
                return False
    return True


def split_plan(plan: Plan, registry: NodeRegistry, remote_names: Iterable[str],
               here: dict[str, bool]) -> Split:
    """Split a plan for one server: nodes the server lacks, and everything upstream of them, run here; the
    rest there. Raises RoutingError when a node must run here but cannot, or a value cannot cross."""
    remote_names = frozenset(remote_names)
    local = {n for n in plan.order if plan.prompt[n]["class_type"] not in remote_names}
    needed_by: dict[str, str] = {}
    for node_id in reversed(plan.order):  # dependents come first: their inputs join the local part
        if node_id in local:
            for dep in plan.dependencies(node_id):
                local.add(dep)
                needed_by.setdefault(dep, node_id)
    for node_id in plan.order:
        if node_id in local and not here[node_id]:
            raise RoutingError(_cannot_run_here(plan, node_id, needed_by.get(node_id), remote_names))
    remote = [n for n in plan.order if n not in local]
    crossings = _crossings(plan, registry, remote, local, remote_names)
    return Split(local=[n for n in plan.order if n in local], remote=remote, crossings=crossings)


def _cannot_run_here(plan: Plan, node_id: str, dependent: str | None, remote_names: frozenset[str]) -> str:
    class_type = plan.prompt[node_id]["class_type"]
    if dependent is None or class_type not in remote_names:
        return (f"node {node_id} ({class_type}) can run neither here nor on the ComfyUI server (the class, or a "
                f"file it names, is missing)")
    return (f"node {node_id} ({class_type}) runs only remotely, but node {dependent} "
            f"({plan.prompt[dependent]['class_type']}), which only NodeWeaver has, needs its output: remote "
            f"outputs cannot come back to this machine yet")


def _crossings(plan: Plan, registry: NodeRegistry, remote: list[str], local: set[str],
               remote_names: frozenset[str]) -> list[Crossing]:
    crossings = []
    for node_id in remote:
        for name, value in plan.prompt[node_id]["inputs"].items():
            if not (is_link(value) and value[0] in local):
                continue
            source, slot = value[0], int(value[1])
            outputs = registry.spec(plan.prompt[source]["class_type"]).outputs
            out_type = outputs[slot].type if slot < len(outputs) else "*"
            where = f"node {source} ({plan.prompt[source]['class_type']}) → node {node_id}.{name}"
            if out_type in IMAGE_TYPES and LOADERS[out_type][0] not in remote_names:
                raise RoutingError(f"{where}: a {out_type} crosses as an uploaded PNG read by "
                                   f"{LOADERS[out_type][0]}, which the server lacks")
            if out_type not in SCALAR_TYPES | IMAGE_TYPES:
                raise RoutingError(f"{where}: a {out_type} cannot cross to the remote part (only STRING, INT, "
                                   f"FLOAT, BOOLEAN, IMAGE and MASK values can)")
            crossings.append(Crossing(node_id, name, source, slot, out_type))
    return crossings


Upload = Callable[[bytes, str], str]  # (PNG bytes, wanted name) -> the name the server's loader reads


def substitute(plan: Plan, split: Split, local: ExecutionResult, upload: Upload | None = None) -> Plan:
    """The remote part as a plan of its own, the local values written in as literal inputs; an image value
    is uploaded (`upload`) as a PNG and its link replaced by a loader node reading that file."""
    prompt = {n: {**plan.prompt[n], "inputs": dict(plan.prompt[n]["inputs"])} for n in split.remote}
    loaders: dict[tuple[str, int], str] = {}  # (local node, slot) -> the loader node reading its upload
    for crossing in split.crossings:
        values = local.node_outputs.get(crossing.source, [])
        column = values[crossing.slot] if crossing.slot < len(values) else []
        where = f"node {crossing.source} → node {crossing.node}.{crossing.input}"
        if len(column) != 1:
            raise RoutingError(f"{where}: a list of {len(column)} values cannot cross to the remote part yet")
        value = column[0]
        if crossing.type in IMAGE_TYPES:
            key = (crossing.source, crossing.slot)
            if key not in loaders:
                loaders[key] = _loader_node(prompt, plan, crossing, value, local.prompt_id, upload, where)
            prompt[crossing.node]["inputs"][crossing.input] = [loaders[key], 0]
            continue
        if not isinstance(value, str | int | float | bool):
            raise RoutingError(f"{where}: a {type(value).__name__} value cannot cross to the remote part")
        prompt[crossing.node]["inputs"][crossing.input] = value
    remote = set(split.remote)
    return Plan.model_construct(prompt=prompt, order=[*loaders.values(), *split.remote],
                                outputs=[o for o in plan.outputs if o in remote], extra=dict(plan.extra))


def _loader_node(prompt: dict[str, Any], plan: Plan, crossing: Crossing, value: Any, prompt_id: str,
                 upload: Upload | None, where: str) -> str:
    """Upload one image value and add the node that reads it on the server; its id."""
    if upload is None:
        raise RoutingError(f"{where}: an {crossing.type} crosses only by upload, and none was given")
    loader, extra = LOADERS[crossing.type]
    name = upload(png_bytes(value, crossing.type, where),
                  f"nodeweaver_{_UNSAFE_NAME.sub('_', prompt_id)}_{crossing.source}_{crossing.slot}.png")
    node_id = f"nw_upload_{crossing.source}_{crossing.slot}"
    while node_id in plan.prompt or node_id in prompt:
        node_id += "_"
    prompt[node_id] = {"class_type": loader, "inputs": {"image": name, **extra}}
    return node_id


def png_bytes(value: Any, kind: str, where: str = "an image") -> bytes:
    """One IMAGE ([1,H,W,C] floats 0..1) or MASK ([1,H,W] or [H,W]) as PNG bytes, rounded so 8-bit pixels
    loaded here come back exactly; a MASK is grayscale (LoadImageMask reads its red channel)."""
    import numpy as np
    from PIL import Image

    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if kind == "MASK" and array.ndim == 2:
        array = array[None]
    if array.ndim != (4 if kind == "IMAGE" else 3) or array.shape[0] != 1:
        raise RoutingError(f"{where}: only a single {kind} can cross to the remote part yet "
                           f"(this one has shape {list(array.shape)})")
    pixels = np.clip(np.rint(255.0 * array[0].astype(np.float32)), 0, 255).astype(np.uint8)
    if kind == "IMAGE":
        channels = pixels.shape[-1]
        if channels not in (1, 3, 4):
            raise RoutingError(f"{where}: an IMAGE with {channels} channels cannot be saved as a PNG")
        picture = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    else:
        picture = Image.fromarray(pixels, mode="L")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def upload_inputs(plan: Plan, server: RemoteServer) -> Plan:
    """The plan with every input file its loaders name that only NodeWeaver's input folder has (not among
    the server's input files as last read) uploaded to the server first; the plan itself is not changed."""
    prompt = dict(plan.prompt)
    for node_id in plan.order:
        node = prompt[node_id]
        name = node.get("inputs", {}).get(UPLOADED_INPUTS.get(node.get("class_type", ""), ""))
        if not isinstance(name, str) or name in server.input_files:
            continue
        try:
            path = folders.input_path(name)
        except folders.UnsafePathError:
            continue  # not a file of ours: the server's validation answers for it
        if not path.is_file():
            continue
        sent = server.client.upload_image(path, name)
        log.info("uploaded input %s to %s as %s", name, server.url, sent)
        server.input_files = server.input_files | {sent}
        prompt[node_id] = {**node, "inputs": {**node["inputs"], UPLOADED_INPUTS[node["class_type"]]: sent}}
    return Plan.model_construct(prompt=prompt, order=list(plan.order), outputs=list(plan.outputs),
                                extra=dict(plan.extra))


def local_part(plan: Plan, split: Split) -> Plan:
    """The local part: its own output nodes, and the nodes whose values cross (their values are needed)."""
    local = set(split.local)
    outputs = [o for o in plan.outputs if o in local]
    outputs += [s for s in dict.fromkeys(c.source for c in split.crossings) if s not in outputs]
    return Plan.model_construct(prompt={n: plan.prompt[n] for n in split.local}, order=list(split.local),
                                outputs=outputs, extra=dict(plan.extra))


@dataclass
class Route:
    """Where one job runs: locally (server None), or on `server` after the split's local part."""

    server: RemoteServer | None
    split: Split


def choose_route(plan: Plan, registry: NodeRegistry, servers: list[RemoteServer],
                 prefer: Literal["local", "remote"] = "remote",
                 load: Callable[[RemoteServer], float] | None = None) -> Route:
    """The route for a plan: local when every node runs here and `prefer` is local (or no server can take a
    part of it); else the least loaded server that takes it whole, or else its remote part (the nodes only
    NodeWeaver has run here first). Raises RoutingError."""
    cache: dict[str, dict] = {}
    here = {n: runs_here(plan.prompt[n], registry, cache) for n in plan.order}
    everything_here = Route(None, Split(local=list(plan.order), remote=[]))
    if all(here.values()) and prefer == "local":
        return everything_here
    splits, reasons = [], []
    for server in servers:
        if server.error is not None or server.backend is None:
            reasons.append(f"{server.url}: unreachable ({server.error or 'not connected'})")
            continue
        try:
            splits.append(Route(server, split_plan(plan, registry, server.names, here)))
        except RoutingError as exc:
            reasons.append(f"{server.url}: {exc}")
    if all(here.values()) and not splits:
        return everything_here  # prefer remote, but no server can take any part of it
    if prefer == "remote" and any(not r.split.local for r in splits):
        splits = [r for r in splits if not r.split.local]  # a server that takes it all, before a split
    if not splits:
        missing = sorted({plan.prompt[n]["class_type"] for n, ok in here.items() if not ok})
        raise RoutingError(f"no backend can run this workflow (needs {', '.join(missing)} elsewhere): "
                           + ("; ".join(reasons) or "no ComfyUI server is configured"))
    if len(splits) == 1 or load is None:
        return splits[0]
    return min(splits, key=lambda r: load(r.server))  # type: ignore[arg-type]


# ---- remote catalogs ------------------------------------------------------------------------------------------
def read_catalog(server: RemoteServer, registry: NodeRegistry) -> dict[str, Any]:
    """(Re)read one server's /object_info into the registry as a remote catalog; a server that cannot be read
    keeps its old entries in the registry (workflows still validate) but is not routed to. Returns its status."""
    try:
        info = server.client.object_info()
        if not isinstance(info, dict):
            raise RoutingError(f"/object_info answered a {type(info).__name__}, not an object of nodes")
    except Exception as exc:  # any failure to reach or read the server: recorded and reported, never fatal
        server.names, server.error = frozenset(), f"{type(exc).__name__}: {exc}"
        log.warning("ComfyUI server %s cannot be read: %s", server.url, server.error)
        return {"url": server.url, "ok": False, "nodes": 0, "error": server.error}
    registry.forget_catalog(server.source)
    registry.import_catalog(info, source=server.source, remote=True)
    server.names, server.error = frozenset(str(n) for n in info), None
    server.input_files = _input_files(info)
    refresh = getattr(server.backend, "refresh", None) if server.backend is not None else None
    if callable(refresh):
        try:
            refresh()
        except Exception as exc:  # its models and stats are a bonus: the catalog is read
            log.warning("ComfyUI server %s: refreshing the backend failed: %s", server.url, exc)
    return {"url": server.url, "ok": True, "nodes": len(server.names), "error": None}


def _input_files(info: dict[str, Any]) -> frozenset[str]:
    """The files a server's input folder had when its catalog was read (its loaders' choice lists)."""
    found: set[str] = set()
    for class_type, name in UPLOADED_INPUTS.items():
        entry = info.get(class_type)
        spec = (entry.get("input") or {}).get("required", {}).get(name) if isinstance(entry, dict) else None
        found.update(str(c) for c in combo_choices(spec) or [])
    return frozenset(found)


def connect_servers(settings: ComfyUISettings, registry: NodeRegistry, *,
                    backends: bool = True) -> list[RemoteServer]:
    """A RemoteServer per configured URL (engine.comfyui's client, and its backend unless only the catalog
    is wanted), each catalog read once; a server that is down is reported (warning, status), not fatal."""
    try:
        from engine.comfyui import ComfyUIBackend, ComfyUIClient
    except ImportError as exc:
        raise RoutingError(f"ComfyUI servers are configured but the ComfyUI backend cannot load: {exc}") from None
    servers = []
    for url in settings.urls:
        client = ComfyUIClient(url, headers=dict(settings.headers) or None, timeout=settings.timeout)
        backend = ComfyUIBackend([client], bus=EventBus(), unavailable_after=settings.lost_after) \
            if backends else None
        servers.append(RemoteServer(url=url, client=client, backend=backend))
    for server in servers:
        read_catalog(server, registry)
    return servers


# ---- the backend ------------------------------------------------------------------------------------------------
class RoutingBackend:
    """A Backend over the local Executor and remote ComfyUI servers; one job at a time runs locally, each
    server takes jobs alongside (its own queue orders them)."""

    def __init__(self, local: Backend, servers: list[RemoteServer], registry: NodeRegistry, *,
                 bus: EventBus | None = None, prefer: Literal["local", "remote"] = "remote") -> None:
        self.local = local
        self.servers = servers
        self.registry = registry
        self.prefer = prefer
        self.bus = bus or EventBus()
        self.slots = max(1, int(getattr(local, "slots", 1))) + len(servers)
        # as many local parts at once as the local backend has slots (the Executor: 1; Ray: its workers)
        self._local_lock = threading.BoundedSemaphore(max(1, int(getattr(local, "slots", 1))))
        self._lock = threading.Lock()
        self._running: dict[str, Backend] = {}
        self._stopped: set[str] = set()
        self._muted: dict[str, frozenset[str]] = {}
        self._unsubscribe = [s.backend.bus.subscribe(self._forward) for s in servers
                             if s.backend is not None and s.backend.bus is not self.bus]

    def refresh(self) -> list[dict[str, Any]]:
        """Re-read every server's catalog (and models, through its backend); their statuses."""
        return [read_catalog(server, self.registry) for server in self.servers]

    def status(self) -> list[dict[str, Any]]:
        """Each server as last read: reachable or not (and why), how many node classes it has."""
        return [{"url": s.url, "ok": s.error is None, "nodes": len(s.names), "error": s.error}
                for s in self.servers]

    # ---- Backend ---------------------------------------------------------------------------------------
    def execute(self, plan: Plan, *, prompt_id: str | None = None, extra_data: dict[str, Any] | None = None,
                node_timeout: float | None = None) -> ExecutionResult:
        import uuid

        prompt_id = prompt_id or str(uuid.uuid4())
        run = _Job(plan, prompt_id, extra_data or {}, node_timeout)
        try:
            try:
                route = choose_route(plan, self.registry, self.servers, self.prefer, load=_queue_load)
            except RoutingError as exc:
                return self._refuse(run, exc, started=False)
            if route.server is None:
                return self._run(self.local, plan, run, frozenset(), local=True)
            if not route.split.local:
                try:
                    remote = upload_inputs(plan, route.server)
                except NodeWeaverError as exc:
                    return self._refuse(run, _upload_failed(route.server, exc), started=False)
                return self._run(route.server.backend, remote, run, frozenset(), local=False)
            return self._run_mixed(route, run)
        finally:
            with self._lock:
                self._stopped.discard(prompt_id)
                self._muted.pop(prompt_id, None)

    def interrupt(self, prompt_id: str | None = None) -> None:
        with self._lock:
            if prompt_id is not None:
                self._stopped.add(prompt_id)
                targets = [self._running[prompt_id]] if prompt_id in self._running else []
            else:
                self._stopped.update(self._running)
                targets = list(dict.fromkeys(self._running.values())) or [self.local]
        for backend in targets:
            backend.interrupt(prompt_id)

    def shutdown(self, wait: float = 0.0) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for server in self.servers:
            if server.backend is not None:
                server.backend.shutdown(wait)
        self.local.shutdown(wait)

    # ---- running the parts ---------------------------------------------------------------------------------
    def _run_mixed(self, route: Route, run: _Job) -> ExecutionResult:
        """The local part, then the remote part with the local values written in; one run to listeners."""
        assert route.server is not None
        first = self._run(self.local, local_part(run.plan, route.split), run, frozenset({"execution_success"}),
                          local=True)
        if first.status != "success":
            return first  # its execution_error / execution_interrupted went out as the job's end
        with self._lock:
            stopped = run.prompt_id in self._stopped
        if stopped:
            self.bus.emit("execution_interrupted", prompt_id=run.prompt_id, node_id=None, node_type=None,
                          executed=list(first.executed), timestamp=timestamp_ms())
            return ExecutionResult(prompt_id=run.prompt_id, status="interrupted", executed=list(first.executed),
                                   error={"node_id": None, "node_type": None, "exception_type":
                                          "InterruptedExecution", "exception_message": "interrupted by the user"})
        server = route.server
        try:
            remote = substitute(run.plan, route.split, first, lambda data, name: server.client.upload_image(data, name))
            remote = upload_inputs(remote, server)
        except RoutingError as exc:
            return self._refuse(run, exc, started=True, executed=first.executed)
        except NodeWeaverError as exc:
            return self._refuse(run, _upload_failed(server, exc), started=True, executed=first.executed)
        second = self._run(route.server.backend, remote, run, frozenset({"execution_start"}), local=False)
        return _merged(run.plan, first, second)

    def _run(self, backend: Backend, plan: Plan, run: _Job, muted: frozenset[str], *,
             local: bool) -> ExecutionResult:
        """One part on one backend; the local backend runs at most its `slots` parts at once."""
        lock = self._local_lock if local else None
        if lock is not None:
            lock.acquire()
        unsubscribe = None
        try:
            with self._lock:
                if run.prompt_id in self._stopped:
                    return ExecutionResult(prompt_id=run.prompt_id, status="interrupted")
                self._running[run.prompt_id] = backend
                self._muted[run.prompt_id] = muted
            if local and backend.bus is not self.bus and self.bus._subscribers:
                unsubscribe = backend.bus.subscribe(self._forward)
            return backend.execute(plan, prompt_id=run.prompt_id, extra_data=run.extra_data,
                                   node_timeout=run.node_timeout)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            with self._lock:
                self._running.pop(run.prompt_id, None)
            if lock is not None:
                lock.release()

    def _forward(self, event: ExecutionEvent) -> None:
        """A part's event onto the job's bus, less the start or end that would split one run into two."""
        muted = self._muted.get(str(event.data.get("prompt_id")))
        if muted and event.type in muted:
            return
        self.bus.emit(event.type, **event.data)

    def _refuse(self, run: _Job, exc: RoutingError, *, started: bool,
                executed: list[str] | None = None) -> ExecutionResult:
        """A job that cannot be routed (or whose values cannot cross) ends as an error, as a node error
        does: listeners see it end, the history keeps the reason."""
        log.warning("job %s cannot be routed: %s", run.prompt_id, exc)
        if not started:
            self.bus.emit("execution_start", prompt_id=run.prompt_id, timestamp=timestamp_ms())
        payload = {"prompt_id": run.prompt_id, "node_id": None, "node_type": None, "executed": list(executed or []),
                   "exception_message": str(exc), "exception_type": "RoutingError", "traceback": [],
                   "current_inputs": {}, "current_outputs": {}}
        self.bus.emit("execution_error", **payload, timestamp=timestamp_ms())
        return ExecutionResult(prompt_id=run.prompt_id, status="error", executed=list(executed or []), error=payload)


@dataclass
class _Job:
    plan: Plan
    prompt_id: str
    extra_data: dict[str, Any]
    node_timeout: float | None


def _upload_failed(server: RemoteServer, exc: NodeWeaverError) -> RoutingError:
    return RoutingError(f"an input could not be uploaded to ComfyUI at {server.url}: {exc}",
                        details={"url": server.url, "kind": exc.kind})


def _queue_load(server: RemoteServer) -> float:
    """How busy a server is (its queue_remaining); one that does not answer is the last choice."""
    try:
        return float(server.client.queue_remaining())
    except Exception as exc:  # a server that does not answer is least attractive, not an error
        log.info("ComfyUI server %s did not say its queue: %s", server.url, exc)
        return float("inf")


def _merged(plan: Plan, first: ExecutionResult, second: ExecutionResult) -> ExecutionResult:
    """One result for a mixed job: the remote part's status, both parts' outputs, nodes and timings."""
    outputs = {n: ui for n, ui in first.outputs.items() if n in plan.outputs}
    outputs.update(second.outputs)
    return ExecutionResult(
        prompt_id=first.prompt_id, status=second.status, outputs=outputs,
        executed=[*first.executed, *second.executed], cached=[*first.cached, *second.cached],
        timings={**first.timings, **second.timings}, error=second.error,
        node_outputs={**first.node_outputs, **second.node_outputs}, seconds=first.seconds + second.seconds)
