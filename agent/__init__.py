"""Words in, workflow out: the planning agent (LangGraph + LLM) and the offline planner.

Only the offline path is imported here: LangChain/LangGraph (agent.llm, agent.graph) cost about a second to
import, so they load inside the functions that plan with an LLM, never for an offline `nodeweaver plan`.
"""

from __future__ import annotations

import os

from agent.planner import PlanResult, plan

__all__ = ["PlanResult", "configured_provider", "plan", "planner_provider"]


def configured_provider() -> str | None:
    """The provider to plan with when none is named (NODEWEAVER_PLANNER_PROVIDER), else None (offline).

    Lives here rather than in agent.llm so that deciding to plan offline does not import LangChain."""
    return os.environ.get("NODEWEAVER_PLANNER_PROVIDER") or None


def planner_provider(explicit: str | None = None) -> str | None:
    """The LLM provider a server plans with: the one the caller named, else the server's configured one.

    None means neither: a server then plans with its MCP caller's model when that client can sample
    (agent.mcp_sampling), and with the offline planner otherwise."""
    return explicit or configured_provider()
