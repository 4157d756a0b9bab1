"""The offline planner: no LLM, a template library plus extraction of what the request states."""
