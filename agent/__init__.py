"""Words in, workflow out: the planning agent (LangGraph + LLM) and the offline planner."""

from agent.planner import PlanResult, plan

__all__ = ["PlanResult", "plan"]
