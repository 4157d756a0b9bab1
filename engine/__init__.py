"""Plan in, results and events out: the executor, its cache, jobs with history, and the model cache."""

from engine.events import EventBus, ExecutionEvent
from engine.executor import ExecutionResult, Executor, NodeAbandoned, NodeExecutionError, NodeTimeout

__all__ = ["EventBus", "ExecutionEvent", "ExecutionResult", "Executor", "NodeAbandoned", "NodeExecutionError",
           "NodeTimeout"]
