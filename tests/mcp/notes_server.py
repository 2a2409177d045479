"""An MCP server written with the official Python SDK, with a side effect:
every call of a tool is appended to the file named by NOTES_LOG, so a test
can prove which calls reached the server."""

import os
from pathlib import Path

from mcp.server import MCPServer

server = MCPServer("notes")
LOG = Path(os.environ["NOTES_LOG"])


def _record(tool: str, text: str) -> None:
    with LOG.open("a") as f:
        f.write(f"{tool}\t{text}\n")


@server.tool()
def write_note(text: str) -> str:
    """Stores a note."""
    _record("write_note", text)
    return f"stored: {text}"


@server.tool()
def erase_everything(confirm: bool) -> str:
    """Erases every note (the policy never allows it)."""
    _record("erase_everything", str(confirm))
    return "erased"


if __name__ == "__main__":
    server.run("stdio")
