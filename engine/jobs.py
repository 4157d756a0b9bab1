"""Jobs: a priority queue of validated workflows, a worker that runs them, and a history kept in SQLite.

Every state change is written before it takes effect, so a restart (even after `kill -9`) loses nothing:
queued jobs run after the restart, and a job that was running is marked `failed_by_restart` (re-running it
is not safe in general: its nodes may have had side effects).

Each JobQueue is one *run* (a server start, a CLI invocation) with its own `run_id`; a job belongs to the run
that queued it, and to the run that took it from the queue when that is a later one. ComfyUI's /history shows
only its own run's jobs (its history lives in memory), so `history(this_run=True)` gives that view; the
persisted whole stays readable with `this_run=False`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from compiler import validate
from compiler.plan import Plan
from compiler.validator import ValidationResult
from engine.backends import Backend
from engine.executor import Executor
from nodes.registry import NodeRegistry
from nodes.spec import json_safe
from runtime.errors import NodeWeaverError

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "success", "error", "interrupted", "cancelled", "failed_by_restart"]
FINISHED = ("success", "error", "interrupted", "cancelled", "failed_by_restart")


class WorkflowInvalid(NodeWeaverError, ValueError):
    """A workflow submitted to the queue did not validate; carries the validation result."""

    kind = "invalid_prompt"

    def __init__(self, result: ValidationResult):
        self.result = result
        super().__init__(f"workflow is invalid: {len(result.errors)} error(s)")


class JobNotFound(NodeWeaverError, LookupError):
    kind = "job_not_found"
    status = 404


class Job(BaseModel):
    """One queued or finished run, as stored."""

    id: str
    number: int
    priority: int = 0
    status: JobStatus
    prompt: dict[str, Any]
    plan: dict[str, Any] = Field(default_factory=dict)
    extra_data: dict[str, Any] = Field(default_factory=dict)
    client_id: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    executed: list[str] = Field(default_factory=list)
    cached: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    run_id: str | None = None  # the run (JobQueue) that queued it, or later took it from the queue
    # set by JobQueue.submit only, never stored: the node_errors of the outputs left out of a partly valid
    # workflow (ComfyUI's /prompt answers with them)
    node_errors: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    prompt TEXT NOT NULL,
    plan TEXT NOT NULL,
    extra_data TEXT NOT NULL DEFAULT '{}',
    client_id TEXT,
    outputs TEXT NOT NULL DEFAULT '{}',
    executed TEXT NOT NULL DEFAULT '[]',
    cached TEXT NOT NULL DEFAULT '[]',
    timings TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    run_id TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, priority, number);
"""
# databases written before runs existed lack the column: it is added (NULL: no run of today's) at open
_RUN_INDEX = "CREATE INDEX IF NOT EXISTS jobs_run ON jobs(run_id, status, number)"
_JSON_FIELDS = ("prompt", "plan", "extra_data", "outputs", "executed", "cached", "timings", "error")
_INSERT_COLUMNS = ("id", "priority", "status", "prompt", "plan", "extra_data", "client_id", "outputs", "executed",
                   "cached", "timings", "error", "created_at", "started_at", "finished_at", "run_id")
# The number is computed inside the INSERT itself: SQLite runs one statement under its write lock, so two
# submissions (threads or processes) can never read the same MAX; the UNIQUE index makes that a guarantee.
_INSERT = (f"INSERT INTO jobs (number, {', '.join(_INSERT_COLUMNS)}) "
           f"SELECT COALESCE(MAX(number), -1) + 1, {', '.join('?' * len(_INSERT_COLUMNS))} FROM jobs "
           "RETURNING number")


def _json_text(value: Any) -> str:
    """A value as the JSON text stored in a column, never failing and losing nothing JSON can hold.

    ensure_ascii=True writes every non-ASCII character as a \\uXXXX escape, lone surrogates included, so
    SQLite (which must encode text as UTF-8) always accepts it and json.loads returns the same string.
    The fast path serialises the value as it is; the deep json_safe copy runs only when JSON cannot hold
    something (a NaN, a non-string key, an arbitrary object).
    """
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(json_safe(value), ensure_ascii=True, separators=(",", ":"))


def _sqlite_text(value: str | None) -> str | None:
    """Plain text for SQLite: a string with lone surrogates (not encodable as UTF-8) keeps them as \\uXXXX."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class JobStore:
    """SQLite persistence for jobs (WAL mode; safe to share between threads)."""

    def __init__(self, path: Path, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id or str(uuid.uuid4())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
            self._ensure_run_column()
            self._ensure_unique_numbers()

    def _ensure_run_column(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "run_id" not in columns:
            try:
                self._db.execute("ALTER TABLE jobs ADD COLUMN run_id TEXT")
            except sqlite3.OperationalError as exc:  # another process added it between the two statements
                if "duplicate column" not in str(exc):
                    raise
        self._db.execute(_RUN_INDEX)

    def _ensure_unique_numbers(self) -> None:
        """Add the UNIQUE index on `number`; a database from before it may hold duplicates (concurrent submits
        read the same MAX): those are renumbered first, keeping the old order, so startup never fails."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'jobs_number'").fetchone():
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            total, distinct = self._db.execute("SELECT COUNT(*), COUNT(DISTINCT number) FROM jobs").fetchone()
            if total != distinct:
                ids = [r[0] for r in self._db.execute("SELECT id FROM jobs ORDER BY number, created_at, rowid")]
                self._db.executemany("UPDATE jobs SET number = ? WHERE id = ?", list(enumerate(ids)))
                log.warning("job history %s had %d duplicate job number(s); renumbered %d jobs in their order",
                            self.path, total - distinct, total)
            self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_number ON jobs(number)")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _row(self, row: sqlite3.Row) -> Job:
        data = dict(row)
        for key in _JSON_FIELDS:
            if data.get(key) is not None:
                data[key] = json.loads(data[key])
        return Job(**data)

    def insert(self, job: Job) -> Job:
        """Store a new job; its `number` is assigned here, atomically. Returns the job with that number.

        The fields are read from the model directly (no model_dump: that deep-copies a big prompt and plan
        only for them to be serialised once more).
        """
        values = []
        for column in _INSERT_COLUMNS:
            value = getattr(job, column)
            if column == "run_id" and value is None:  # stored through this store: this run's job
                value = self.run_id
            if column in _JSON_FIELDS:
                value = _json_text(value) if value is not None else None
            elif isinstance(value, str):
                value = _sqlite_text(value)
            values.append(value)
        with self._lock:
            number = self._db.execute(_INSERT, values).fetchone()[0]
        return job.model_copy(update={"number": int(number)})

    def update(self, job_id: str, **fields: Any) -> None:
        for key in _JSON_FIELDS:
            if key in fields and fields[key] is not None:
                fields[key] = _json_text(fields[key])
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*fields.values(), job_id])

    def claim_next(self) -> Job | None:
        """Atomically take the highest-priority, oldest queued job and mark it running."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT * FROM jobs WHERE status = 'queued' "
                                       "ORDER BY priority DESC, number ASC LIMIT 1").fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                now = time.time()
                # a job queued by an earlier run belongs to the run that runs it
                self._db.execute("UPDATE jobs SET status = 'running', started_at = ?, run_id = ? WHERE id = ?",
                                 (now, self.run_id, row["id"]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        job = self._row(row)
        return job.model_copy(update={"status": "running", "started_at": now, "run_id": self.run_id})

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    @staticmethod
    def _where(statuses: tuple[str, ...] | None, run_id: str | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if statuses:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def list(self, statuses: tuple[str, ...] | None = None, limit: int = 200, newest_first: bool = True,
             offset: int = 0, run_id: str | None = None) -> list[Job]:
        """Jobs with these statuses (of one run, or all), newest first (or in queue order), `offset` rows
        skipped."""
        where, params = self._where(statuses, run_id)
        query = "SELECT * FROM jobs" + where
        query += " ORDER BY number DESC" if newest_first else " ORDER BY priority DESC, number ASC"
        query += " LIMIT ? OFFSET ?"
        params.extend((limit, max(0, offset)))
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [self._row(r) for r in rows]

    def count(self, statuses: tuple[str, ...] | None = None, run_id: str | None = None) -> int:
        where, params = self._where(statuses, run_id)
        query = "SELECT COUNT(*) FROM jobs" + where
        with self._lock:
            return int(self._db.execute(query, params).fetchone()[0])

    def client_of(self, job_id: str) -> str | None:
        """Only the client id: the websocket asks for every event's job, so the prompt is not parsed for it."""
        with self._lock:
            row = self._db.execute("SELECT client_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def recover(self) -> list[str]:
        """After a restart: jobs left running were interrupted by the restart."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE status = 'running'").fetchall()
            self._db.execute("UPDATE jobs SET status = 'failed_by_restart', finished_at = ?, error = ? "
                             "WHERE status = 'running'",
                             (time.time(), json.dumps({"exception_type": "ProcessRestart",
                                                       "exception_message": "the process stopped while this job "
                                                                            "was running; submit it again"})))
        return [r["id"] for r in rows]

    def delete(self, job_ids: list[str] | None = None, statuses: tuple[str, ...] | None = None) -> int:
        """Forget finished jobs: the listed ones, or those with these statuses. Queued and running jobs stay
        (cancel them first), so clearing history never drops work."""
        finished = ", ".join(f"'{s}'" for s in FINISHED)
        with self._lock:
            if job_ids is not None:
                cur = self._db.execute(f"DELETE FROM jobs WHERE id IN ({', '.join('?' * len(job_ids))}) "
                                       f"AND status IN ({finished})", job_ids)
            elif statuses:
                wanted = [s for s in statuses if s in FINISHED]
                cur = self._db.execute(f"DELETE FROM jobs WHERE status IN ({', '.join('?' * len(wanted))})",
                                       wanted)
            else:
                return 0
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


class JobQueue:
    """Validates and queues workflows, runs them one at a time in a worker thread, and keeps history."""

    def __init__(self, registry: NodeRegistry, db_path: Path, *, executor: Backend | None = None,
                 node_timeout: float | None = None) -> None:
        self.registry = registry
        self.store = JobStore(db_path)
        self.run_id = self.store.run_id
        # the backend that runs plans: the local Executor, or a remote one (engine.backends.Backend)
        self.executor: Backend = executor or Executor(registry, node_timeout=node_timeout)
        self.node_timeout = node_timeout  # server-wide: applied to every run (a smaller class TIMEOUT wins)
        self.recovered = self.store.recover()
        self._wake = threading.Condition()
        self._stop = False
        self._workers: list[threading.Thread] = []
        self._running: set[str] = set()
        self._done = threading.Condition()

    # ---- submitting -----------------------------------------------------------------------------------
    def submit(self, prompt: dict[str, Any], *, priority: int = 0, extra_data: dict | None = None,
               client_id: str | None = None, outputs: list[str] | None = None, job_id: str | None = None,
               partial: bool = False) -> Job:
        """Validate and queue; raises WorkflowInvalid with every error when the workflow is not valid.

        With `partial`, as ComfyUI's /prompt: when only some outputs are invalid the job runs the good ones
        and the bad ones come back in the job's `node_errors`; WorkflowInvalid only when none is valid."""
        result = validate(prompt, self.registry, outputs=outputs)
        node_errors: dict[str, Any] = {}
        if not result.valid and partial and result.good_outputs:
            narrowed = validate(prompt, self.registry, outputs=result.good_outputs)
            if narrowed.valid:
                node_errors, result = result.node_errors(), narrowed
        if not result.valid or result.plan is None:
            raise WorkflowInvalid(result)
        job = self._enqueue(prompt, result.plan, priority, extra_data, client_id, job_id)
        return job.model_copy(update={"node_errors": node_errors}) if node_errors else job

    def _enqueue(self, prompt: dict[str, Any], plan: Plan, priority: int, extra_data: dict | None,
                 client_id: str | None, job_id: str | None) -> Job:
        # the plan's fields as they are: model_dump would deep-copy every node of a big workflow
        plan_data = {"prompt": plan.prompt, "order": plan.order, "outputs": plan.outputs, "extra": plan.extra}
        job = Job(id=job_id or str(uuid.uuid4()), number=-1, priority=priority, status="queued", prompt=prompt,
                  plan=plan_data, extra_data=extra_data or {}, client_id=client_id, created_at=time.time(),
                  run_id=self.run_id)
        job = self.store.insert(job)
        with self._wake:
            self._wake.notify_all()
        return job

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job; a running one is interrupted instead. False when it had already finished."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.status == "queued":
            self.store.update(job_id, status="cancelled", finished_at=time.time(), run_id=self.run_id)
            self._notify_done()
            return True
        if job.status == "running":
            self.interrupt(job_id)
            return True
        return False

    def interrupt(self, job_id: str | None = None) -> None:
        """Stop a running job (None: every job running now, as ComfyUI's /interrupt does)."""
        for running in [job_id] if job_id else (list(self._running) or [None]):
            self.executor.interrupt(running)

    # ---- reading ------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def pending(self) -> list[Job]:
        return self.store.list(("queued",), limit=10_000, newest_first=False)

    def running(self) -> list[Job]:
        return self.store.list(("running",), limit=10)

    def history(self, limit: int = 200, offset: int = 0, this_run: bool = False) -> list[Job]:
        """Finished jobs (of this run, or of every run), newest first."""
        return self.store.list(FINISHED, limit=limit, offset=offset, run_id=self.run_id if this_run else None)

    def history_page(self, max_items: int, offset: int | None = None, this_run: bool = False) -> list[Job]:
        """ComfyUI's /history paging, oldest first: `offset` skips that many of the oldest and `max_items`
        bounds the count; without an offset (None or negative, ComfyUI's -1) the newest `max_items`."""
        if offset is None or offset < 0:
            return self.history(limit=max_items, this_run=this_run)[::-1]
        total = self.store.count(FINISHED, run_id=self.run_id if this_run else None)
        first = max(0, total - offset - max_items)  # the oldest `offset` are skipped: read from the newest end
        return self.history(limit=max(0, min(max_items, total - offset)), offset=first, this_run=this_run)[::-1]

    def in_this_run(self, job: Job) -> bool:
        return job.run_id == self.run_id

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            while True:
                job = self.get(job_id)
                if job.finished:
                    return job
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return job
                self._done.wait(timeout=0.5 if remaining is None else min(0.5, remaining))

    # ---- running ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start one worker per slot of the backend (the local executor has one)."""
        if any(worker.is_alive() for worker in self._workers):
            return
        self._stop = False
        self._workers = [threading.Thread(target=self._work, name=f"nodeweaver-jobs-{n}", daemon=True)
                         for n in range(max(1, int(getattr(self.executor, "slots", 1))))]
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop = True
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self.stop()
        self.store.close()

    def run_next(self) -> Job | None:
        """Run the next queued job in this thread (used by the CLI and by the worker)."""
        job = self.store.claim_next()
        if job is None:
            return None
        self._running.add(job.id)
        try:
            plan = Plan.model_construct(**job.plan)
            result = self.executor.execute(plan, prompt_id=job.id, extra_data=job.extra_data,
                                           node_timeout=self.node_timeout)
            self.store.update(job.id, status=result.status, outputs=result.outputs, executed=result.executed,
                              cached=result.cached, timings={k: round(v, 6) for k, v in result.timings.items()},
                              error=result.error, finished_at=time.time())
        except Exception as exc:  # the executor reports node failures itself; this is a bug guard
            log.exception("job %s crashed", job.id)
            self.store.update(job.id, status="error", finished_at=time.time(),
                              error={"exception_type": type(exc).__name__, "exception_message": str(exc)})
        finally:
            self._running.discard(job.id)
            # ComfyUI's end-of-prompt signal, sent only once the history holds the result (clients read
            # /history as soon as they see it), and before waiters wake
            self.executor.bus.emit("executing", node=None, display_node=None, prompt_id=job.id)
            self._notify_done()
        return self.get(job.id)

    def _work(self) -> None:
        while not self._stop:
            job = self.run_next()
            if job is None:
                with self._wake:
                    if not self._stop:
                        self._wake.wait(timeout=1.0)

    def _notify_done(self) -> None:
        with self._done:
            self._done.notify_all()
