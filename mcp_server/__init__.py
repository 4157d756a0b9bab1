"""NodeWeaver: mcp_server stage (see ../shared/ARCHITECTURE.md)."""
