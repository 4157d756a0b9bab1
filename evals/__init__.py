"""NodeWeaver: evals stage (see ../shared/ARCHITECTURE.md)."""
