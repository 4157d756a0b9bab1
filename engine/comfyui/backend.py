"""A Backend (engine.backends) that runs plans on remote ComfyUI servers.

Each job goes to the least-loaded server (ComfyUI's queue_remaining) among those having every node class
of the plan. The server's /ws events for the job become NodeWeaver's events on `bus` with the job id as
`prompt_id`; output files are fetched through /view into NodeWeaver's output folder, so history and /view
here look as if the job ran locally. A server that goes away mid-job (websocket closed and /system_stats
unanswered for `unavailable_after` seconds) fails the job with BackendUnavailable: no job waits forever.
Lost websocket messages (a reconnect mid-job) are made up for from the server's /history.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from engine.comfyui.client import ComfyUIClient, EventStream
from engine.comfyui.errors import BackendUnavailable, RemoteError, RemoteValidationError
from engine.events import EventBus, timestamp_ms
from engine.executor import ExecutionResult
from runtime import folders
from runtime.errors import NodeWeaverError

if TYPE_CHECKING:
    from compiler.plan import Plan

log = logging.getLogger(__name__)

_FORWARDED = ("execution_start", "execution_cached", "executing", "progress", "executed")
_ENDINGS = ("execution_success", "execution_error", "execution_interrupted")
_COUNTER = re.compile(r"_\d{5}_$")  # ComfyUI's `{prefix}_{counter:05}_` file stem
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class _Server:
    """One ComfyUI server: its client, node classes (cached), event listener and the jobs running there."""

    client: ComfyUIClient
    index: int
    classes: frozenset[str] | None = None
    stream: EventStream | None = None
    listener: threading.Thread | None = None
    runs: dict[str, _RemoteRun] = field(default_factory=dict)  # remote prompt id -> run
    active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _RemoteRun:
    """One job on one server: the messages routed to it and what they told so far."""

    job_id: str
    remote_id: str
    server: _Server | None = None
    submitted: bool = False
    inbox: queue.Queue = field(default_factory=queue.Queue)
    started: bool = False            # the server sent execution_start
    start_emitted: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    node: str | None = None
    node_since: float = 0.0
    interrupt_requested: bool = False
    timed_out: str | None = None     # the node that ran past node_timeout (then interrupted)
    last_message: float = field(default_factory=time.monotonic)
    last_history: float = 0.0
    unreachable_since: float | None = None
    connects_at_submit: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)

    @property
    def client(self) -> ComfyUIClient:
        assert self.server is not None, "this job has no server yet"
        return self.server.client


class ComfyUIBackend:
    """Runs plans on one or more ComfyUI servers; `slots` = the number of servers."""

    def __init__(self, clients: list[ComfyUIClient], *, bus: EventBus | None = None, client_id: str | None = None,
                 unavailable_after: float = 30.0, poll: float = 0.5, history_every: float = 5.0) -> None:
        """`unavailable_after`: seconds a server may be unreachable (websocket down, /system_stats
        unanswered) before its job fails. `history_every`: how often a quiet job checks /history."""
        if not clients:
            raise ValueError("ComfyUIBackend needs at least one ComfyUIClient")
        self.bus = bus or EventBus()
        self.client_id = client_id or uuid.uuid4().hex
        self.unavailable_after = float(unavailable_after)
        self.poll = float(poll)
        self.history_every = float(history_every)
        self.servers = [_Server(client=c, index=i) for i, c in enumerate(clients)]
        self.slots = len(self.servers)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._jobs: dict[str, _RemoteRun] = {}  # NodeWeaver job id -> run

    # ---- catalog ----------------------------------------------------------------------------------------
    def refresh(self) -> dict[str, str | None]:
        """Read every server's /object_info again; {url: None, or why it could not be read}."""
        report: dict[str, str | None] = {}
        for server in self.servers:
            server.classes = None
            try:
                self._classes(server)
                report[server.client.url] = None
            except NodeWeaverError as exc:
                report[server.client.url] = str(exc)
        return report

    def _classes(self, server: _Server) -> frozenset[str]:
        with server.lock:
            if server.classes is None:
                server.classes = frozenset(server.client.object_info())
            return server.classes

    def _choose(self, needed: set[str]) -> tuple[_Server | None, list[str], bool]:
        """The least-loaded server having every class in `needed` (counted as taken at once, so two jobs
        choosing together spread), or None, why not, and whether every server was unreachable."""
        reasons: list[str] = []
        candidates: list[tuple[int, _Server]] = []
        unreachable = 0
        for server in self.servers:  # HTTP outside the lock: a slow server does not hold up the others
            try:
                missing = sorted(needed - self._classes(server))
                if missing:
                    reasons.append(f"{server.client.url} lacks {', '.join(missing)}")
                    continue
                candidates.append((server.client.queue_remaining(), server))
            except NodeWeaverError as exc:
                unreachable += isinstance(exc, BackendUnavailable)
                reasons.append(str(exc))
        if not candidates:
            return None, reasons, unreachable == len(self.servers)
        with self._lock:
            chosen = min(candidates, key=lambda c: (c[0], c[1].active, c[1].index))[1]
            chosen.active += 1
        return chosen, reasons, False

    # ---- events from the servers ------------------------------------------------------------------------
    def _listen(self, server: _Server) -> EventStream:
        """Start the server's websocket reader once; wait (bounded) for it to connect."""
        with server.lock:
            if server.listener is None or not server.listener.is_alive():
                server.stream = server.client.event_stream(self.client_id)
                server.listener = threading.Thread(target=self._read, args=(server, server.stream), daemon=True,
                                                   name=f"nodeweaver-comfyui-{server.index}")
                server.listener.start()
            stream = server.stream
        assert stream is not None
        deadline = time.monotonic() + server.client.connect_timeout + 1.0
        while not stream.connected and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.02)
        return stream

    def _read(self, server: _Server, stream: EventStream) -> None:
        for message in stream.messages(self._stop):
            data = message.get("data")
            prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
            run = server.runs.get(prompt_id) if isinstance(prompt_id, str) else None
            if run is not None:
                run.inbox.put(message)

    # ---- running ----------------------------------------------------------------------------------------
    def execute(self, plan: Plan, *, prompt_id: str | None = None, extra_data: dict[str, Any] | None = None,
                node_timeout: float | None = None) -> ExecutionResult:
        """Run the plan on a server; failures (refused, unreachable, node errors) are results."""
        run = _RemoteRun(job_id=prompt_id or str(uuid.uuid4()), remote_id=str(uuid.uuid4()))
        prompt = {node_id: plan.prompt[node_id] for node_id in plan.order}
        with self._lock:
            self._jobs[run.job_id] = run  # known at once: an interrupt from now on is not lost
        try:
            server, reasons, unreachable = self._choose({str(node["class_type"]) for node in prompt.values()})
            if server is None:
                return self._fail(run, "BackendUnavailable" if unreachable else "MissingNodeClasses",
                                  "no ComfyUI server can run this workflow: " + "; ".join(reasons))
            run.server = server
            try:
                return self._run(run, prompt, extra_data or {}, node_timeout)
            finally:
                with self._lock:
                    server.active -= 1
                    server.runs.pop(run.remote_id, None)
        finally:
            with self._lock:
                self._jobs.pop(run.job_id, None)

    def _run(self, run: _RemoteRun, prompt: dict[str, Any], extra_data: dict[str, Any],
             node_timeout: float | None) -> ExecutionResult:
        server = run.server
        assert server is not None
        stream = self._listen(server)
        with self._lock:
            server.runs[run.remote_id] = run  # before submitting: the first events may come at once
        if run.interrupt_requested:
            return self._interrupted(run, {"node_id": None, "node_type": None})
        run.connects_at_submit = stream.connects
        try:
            server.client.queue_prompt(prompt, client_id=self.client_id, extra_data=extra_data,
                                       prompt_id=run.remote_id)
        except RemoteValidationError as exc:
            return self._fail(run, "RemoteValidationError", str(exc),
                              node_errors=exc.node_errors, errors=exc.details["errors"])
        except NodeWeaverError as exc:
            return self._fail(run, _kind(exc), str(exc))
        run.submitted = True
        log.info("job %s runs on %s as %s", run.job_id, server.client.url, run.remote_id)
        try:
            return self._follow(run, stream, node_timeout)
        except NodeWeaverError as exc:  # the server went away while outputs were fetched, or answered nonsense
            return self._fail(run, _kind(exc), str(exc))

    def _follow(self, run: _RemoteRun, stream: EventStream, node_timeout: float | None) -> ExecutionResult:
        while True:
            try:
                message = run.inbox.get(timeout=self.poll)
            except queue.Empty:
                message = None
            if message is not None:
                run.last_message, run.unreachable_since = time.monotonic(), None
                result = self._on_message(run, message)
            else:
                result = self._check(run, stream, node_timeout)
            if result is not None:
                return result

    def _on_message(self, run: _RemoteRun, message: dict[str, Any]) -> ExecutionResult | None:
        kind, data = message["type"], dict(message.get("data") or {})
        data["prompt_id"] = run.job_id
        if kind == "executing" and data.get("node") is None:  # ComfyUI's end-of-prompt: the queue sends ours
            return None
        if kind == "execution_start":
            run.started = run.start_emitted = True
        elif not run.start_emitted and (kind in _FORWARDED or kind in _ENDINGS):
            run.start_emitted = True  # its execution_start was lost (a reconnect): listeners still see one
            self.bus.emit("execution_start", prompt_id=run.job_id, timestamp=timestamp_ms())
        if kind == "execution_cached":
            run.cached = [str(n) for n in data.get("nodes") or []]
        elif kind == "executing":
            self._node_done(run)
            run.node, run.node_since = str(data["node"]), time.monotonic()
            if run.node not in run.executed:
                run.executed.append(run.node)
        elif kind == "executed":
            data["output"] = self._fetch_outputs(run, data.get("output"))
            run.outputs[str(data.get("node"))] = data["output"]
        elif kind == "execution_success":
            return self._succeed(run, data.get("timestamp"))
        elif kind == "execution_error":
            return self._remote_error(run, data)
        elif kind == "execution_interrupted":
            return self._interrupted(run, data)
        if kind in _FORWARDED:
            self.bus.emit(kind, **data)
        return None

    # ---- quiet spells: liveness, lost messages, interrupts of queued prompts, node timeouts -------------
    def _check(self, run: _RemoteRun, stream: EventStream, node_timeout: float | None) -> ExecutionResult | None:
        now = time.monotonic()
        try:
            result = self._probe(run, stream, node_timeout, now)
        except BackendUnavailable as exc:
            run.unreachable_since = run.unreachable_since or now
            if now - run.unreachable_since < self.unavailable_after:
                return None
            return self._fail(run, "BackendUnavailable",
                              f"ComfyUI at {run.client.url} went away while running this job: no "
                              f"websocket and no answer for {self.unavailable_after:g} s "
                              f"(last: {(exc.details or {}).get('why', exc)})")
        run.unreachable_since = None
        return result

    def _probe(self, run: _RemoteRun, stream: EventStream, node_timeout: float | None,
               now: float) -> ExecutionResult | None:
        """Raises BackendUnavailable while the server does not answer."""
        client = run.client
        if not stream.connected:
            client.system_stats(timeout=min(2.0, client.timeout))
        if node_timeout and run.node and run.timed_out is None and now - run.node_since > node_timeout:
            run.timed_out = run.node
            client.interrupt(run.remote_id)
        # after a reconnect (messages may be lost) or an interrupt: every second; otherwise when quiet
        eager = run.interrupt_requested or not stream.connected or stream.connects != run.connects_at_submit
        since = now - run.last_history
        if (eager and since >= 1.0) or min(since, now - run.last_message) >= self.history_every:
            run.last_history = now
            return self._from_history(run)
        return None

    def _from_history(self, run: _RemoteRun) -> ExecutionResult | None:
        """Finish from the server's /history when its messages were lost; notice a prompt that vanished
        from the server's queue (deleted there, or by our interrupt before it started)."""
        client = run.client
        entry = client.history(run.remote_id)
        if entry is None:
            queued = client.queue()
            ids = {str(item[1]) for items in queued.values() for item in items if len(item) > 1}
            if run.remote_id in ids:
                if run.interrupt_requested:  # asked before the prompt reached the server: ask again
                    client.delete_queued([run.remote_id])
                    client.interrupt(run.remote_id)
                return None
            entry = client.history(run.remote_id)  # it may have finished between the two questions
            if entry is None:
                if run.interrupt_requested:
                    return self._interrupted(run, {"node_id": None, "node_type": None})
                return self._fail(run, "RemoteError", f"the prompt left the queue of ComfyUI at {client.url} "
                                                      "without a result (deleted there?)")
        status = entry.get("status") or {}
        if not status.get("completed") and status.get("status_str") not in ("success", "error"):
            return None
        return self._replay_history(run, entry)

    def _replay_history(self, run: _RemoteRun, entry: dict[str, Any]) -> ExecutionResult:
        for node_id, output in (entry.get("outputs") or {}).items():
            if str(node_id) not in run.outputs:
                self._on_message(run, {"type": "executed", "data": {"node": node_id, "display_node": node_id,
                                                                    "output": output}})
        ending: tuple[str, dict[str, Any]] = ("execution_success", {})
        for item in (entry.get("status") or {}).get("messages") or []:
            if isinstance(item, list) and len(item) == 2 and item[0] in _ENDINGS:
                ending = (item[0], dict(item[1] or {}))
        result = self._on_message(run, {"type": ending[0], "data": ending[1]})
        assert result is not None
        return result

    # ---- endings ----------------------------------------------------------------------------------------
    @staticmethod
    def _node_done(run: _RemoteRun) -> None:
        """The node that ran until now took this long (as the server reports nodes one after another)."""
        if run.node is not None and run.node not in run.timings:
            run.timings[run.node] = time.monotonic() - run.node_since

    def _result(self, run: _RemoteRun, status: str, error: dict[str, Any] | None = None) -> ExecutionResult:
        if status == "success":
            self._node_done(run)
        return ExecutionResult(prompt_id=run.job_id, status=status, outputs=dict(run.outputs),
                               executed=list(run.executed), cached=list(run.cached), error=error,
                               timings=dict(run.timings), seconds=time.monotonic() - run.began)

    def _succeed(self, run: _RemoteRun, timestamp: Any) -> ExecutionResult:
        self.bus.emit("execution_success", prompt_id=run.job_id, timestamp=timestamp or timestamp_ms())
        return self._result(run, "success")

    def _remote_error(self, run: _RemoteRun, data: dict[str, Any]) -> ExecutionResult:
        payload = {"prompt_id": run.job_id, "node_id": None, "node_type": None, "executed": list(run.executed),
                   "exception_message": "", "exception_type": "", "traceback": [], "current_inputs": {},
                   "current_outputs": {}, **data, "remote": run.client.url}
        run.executed = [str(n) for n in payload.get("executed") or run.executed]
        self.bus.emit("execution_error", **payload)
        return self._result(run, "error", payload)

    def _interrupted(self, run: _RemoteRun, data: dict[str, Any]) -> ExecutionResult:
        node_id, node_type = data.get("node_id"), data.get("node_type")
        if run.timed_out is not None:  # interrupted by us: the node ran past its time
            return self._fail(run, "NodeTimeout", f"node {run.timed_out} ran past its time limit on "
                                                  f"ComfyUI at {run.client.url}", node_id=run.timed_out)
        run.executed = [str(n) for n in data.get("executed") or run.executed]
        self.bus.emit("execution_interrupted", prompt_id=run.job_id, node_id=node_id, node_type=node_type,
                      executed=list(run.executed))
        return self._result(run, "interrupted", {"node_id": node_id, "node_type": node_type,
                                                 "exception_type": "InterruptedExecution",
                                                 "exception_message": "interrupted by the user"})

    def _fail(self, run: _RemoteRun, exception_type: str, message: str, node_id: str | None = None,
              **extra: Any) -> ExecutionResult:
        """A failure found here (not reported by the server): the local executor's error shape."""
        if not run.start_emitted:
            run.start_emitted = True
            self.bus.emit("execution_start", prompt_id=run.job_id, timestamp=timestamp_ms())
        payload = {"prompt_id": run.job_id, "node_id": node_id, "node_type": None, "executed": list(run.executed),
                   "exception_message": message, "exception_type": exception_type, "traceback": [],
                   "current_inputs": {}, "current_outputs": {}, **extra}
        if run.server is not None:
            payload["remote"] = run.client.url
        log.warning("job %s failed on ComfyUI: %s: %s", run.job_id, exception_type, message)
        self.bus.emit("execution_error", **payload)
        return self._result(run, "error", payload)

    # ---- output files -----------------------------------------------------------------------------------
    def _fetch_outputs(self, run: _RemoteRun, output: Any) -> Any:
        """Every file an `executed` output lists (images, gifs, videos, audio …), fetched into our folders;
        the entries renamed to where they now are. Other values pass unchanged."""
        if not isinstance(output, dict):
            return output
        fetched: dict[str, Any] = {}
        for key, items in output.items():
            if isinstance(items, list):
                fetched[key] = [self._fetch_file(run, item) if _is_file(item) else item for item in items]
            else:
                fetched[key] = items
        return fetched

    def _fetch_file(self, run: _RemoteRun, item: dict[str, Any]) -> dict[str, Any]:
        folder_type = item.get("type") or "output"
        subfolder = str(item.get("subfolder") or "")
        content = run.client.view(str(item["filename"]), subfolder, folder_type)
        prefix, extension = local_name(str(item["filename"]), subfolder)
        make = folders.next_temp_file if folder_type == "temp" else folders.next_output_file
        path, local_subfolder, filename = make(prefix, extension)
        path.write_bytes(content)
        return {**item, "filename": filename, "subfolder": local_subfolder, "type": folder_type}

    # ---- control ----------------------------------------------------------------------------------------
    def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the job on its server if it runs there; take it out of the remote queue if it waits."""
        with self._lock:
            runs = [self._jobs[prompt_id]] if prompt_id in self._jobs else (
                list(self._jobs.values()) if prompt_id is None else [])
        for run in runs:
            run.interrupt_requested = True
            if run.server is None or not run.submitted:  # not on a server yet: it stops before it is sent
                continue
            client = run.client
            try:
                client.delete_queued([run.remote_id])
                client.interrupt(run.remote_id)
            except NodeWeaverError as exc:  # the job's own liveness check reports a dead server
                log.warning("could not interrupt job %s on %s: %s", run.job_id, client.url, exc)

    def shutdown(self, wait: float = 0.0) -> None:
        """Stop the websocket readers and close the connections."""
        self._stop.set()
        deadline = time.monotonic() + wait
        for server in self.servers:
            if server.stream is not None:
                server.stream.close()
            if server.listener is not None:
                server.listener.join(timeout=max(0.0, deadline - time.monotonic()))
            server.client.close()


def _kind(exc: NodeWeaverError) -> str:
    if isinstance(exc, BackendUnavailable):
        return "BackendUnavailable"
    return "RemoteError" if isinstance(exc, RemoteError) else type(exc).__name__


def _is_file(item: Any) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("filename"), str)
            and item.get("type", "output") in ("output", "temp"))


def local_name(filename: str, subfolder: str) -> tuple[str, str]:
    """(prefix, extension) for NodeWeaver's own name of a fetched file: the remote stem without ComfyUI's
    counter, each path part reduced to safe characters, so no remote name can leave the output folder."""
    path = PurePosixPath(filename.replace("\\", "/"))
    extension = _UNSAFE.sub("", path.suffix.lstrip("."))[:12].lower() or "bin"
    stem = _COUNTER.sub("", path.stem) or "ComfyUI"
    parts = [_UNSAFE.sub("_", part).strip("._") for part in subfolder.replace("\\", "/").split("/")]
    parts = [p for p in parts if p] + [_UNSAFE.sub("_", stem).strip("._") or "ComfyUI"]
    return "/".join(parts), extension
