"""Words in, workflow out: the planning agent (LangGraph + LLM) and the offline planner.

Only the offline path is imported here: LangChain/LangGraph (agent.llm, agent.graph) cost about a second to
import, so they load inside the functions that plan with an LLM, never for an offline `nodeweaver plan`.
"""

from __future__ import annotations

import os

from agent.planner import PlanResult, plan

__all__ = ["PlanResult", "configured_provider", "plan"]


def configured_provider() -> str | None:
    """The provider to plan with when none is named (NODEWEAVER_PLANNER_PROVIDER), else None (offline).

    Lives here rather than in agent.llm so that deciding to plan offline does not import LangChain."""
    return os.environ.get("NODEWEAVER_PLANNER_PROVIDER") or None
