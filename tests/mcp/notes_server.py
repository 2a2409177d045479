"""An MCP server written with the official Python SDK, with a side effect:
every call of a tool is appended to the file named by NOTES_LOG, so a test
can prove which calls reached the server."""

import os
import sys
from pathlib import Path

import anyio
from mcp.server import MCPServer
from mcp_types import ToolAnnotations

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


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def slow_echo(text: str) -> str:
    """Echoes the text after five seconds (records a cancellation if it is cancelled first)."""
    _record("slow_echo started", text)
    try:
        await anyio.sleep(5)
    except anyio.get_cancelled_exc_class():
        _record("slow_echo cancelled", text)
        raise
    _record("slow_echo", text)
    return text


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def big_answer(mib: int) -> str:
    """Answers with `mib` MiB of text (a gateway relays at most 16 MiB)."""
    _record("big_answer", str(mib))
    return "x" * (mib << 20)


if __name__ == "__main__":
    # `notes_server.py` speaks stdio; `notes_server.py http PORT [stateless]`
    # serves streamable HTTP at http://127.0.0.1:PORT/mcp.
    if sys.argv[1:2] == ["https"]:
        # `notes_server.py https PORT CERT KEY`: the same over TLS.
        import uvicorn

        uvicorn.run(
            server.streamable_http_app(),
            host="127.0.0.1",
            port=int(sys.argv[2]),
            ssl_certfile=sys.argv[3],
            ssl_keyfile=sys.argv[4],
            log_level="warning",
        )
    elif sys.argv[1:2] == ["http"]:
        server.run(
            "streamable-http",
            host="127.0.0.1",
            port=int(sys.argv[2]),
            stateless_http=sys.argv[3:4] == ["stateless"],
        )
    else:
        server.run("stdio")
