"""NodeWeaver: agent stage (see ../shared/ARCHITECTURE.md)."""
