"""NodeWeaver: engine stage (see ../shared/ARCHITECTURE.md)."""
