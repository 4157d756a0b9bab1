"""Where a job's plan runs: the seam between the job queue and the machines that execute plans.

The queue owns jobs (store, order, history, cancel); a backend owns running one plan and reporting ComfyUI's
events for it on its bus. The local Executor is one; a remote ComfyUI server and a Ray cluster are others.
Events and history look the same whichever ran a job, because the queue stores the `ExecutionResult` and
the events carry the job's id as `prompt_id`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from compiler.plan import Plan
    from engine.events import EventBus
    from engine.executor import ExecutionResult


@runtime_checkable
class Backend(Protocol):
    """Runs plans; `slots` jobs at once (the queue starts that many workers)."""

    bus: EventBus
    slots: int

    def execute(self, plan: Plan, *, prompt_id: str | None = None, extra_data: dict[str, Any] | None = None,
                node_timeout: float | None = None) -> ExecutionResult:
        """Run one plan to its end (success, error or interrupted); node failures are results, not raises.
        Emits execution_start … execution_success/error/interrupted with `prompt_id` on `bus`."""
        ...

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running job `prompt_id` (None: whatever runs now)."""
        ...

    def shutdown(self, wait: float = 0.0) -> None:
        """Release threads, connections and workers; wait up to `wait` seconds for them."""
        ...
