"""A small MCP server for chat-relay, built with the official `mcp` SDK: a notebook and a
clock. Run by the relay over stdio (one process per relay process):

    MCP_SERVERS='[{"name": "notes", "command": "python", "args": ["examples/mcp/server.py"]}]'

or over streamable HTTP (`python examples/mcp/server.py http 8765`):

    MCP_SERVERS='[{"name": "notes", "url": "http://127.0.0.1:8765/mcp"}]'

Claude then sees `mcp__notes__add_note`, `mcp__notes__list_notes` and `mcp__notes__now`.
In demo mode (no API key) ask a question that names a tool ("add_note: buy milk", "what is
now?") and the demo upstream calls it, so the whole loop shows without a key.
"""

import sys
from datetime import UTC, datetime

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")
NOTES: list[str] = []  # this process's notebook: kept while it runs
MAX_NOTES = 100


@server.tool(description="Write a note in the notebook.")
def add_note(text: str) -> str:
    NOTES.append(text[:1000])
    del NOTES[:-MAX_NOTES]
    return f"Noted ({len(NOTES)} notes)."


@server.tool(description="Every note in the notebook, oldest first.")
def list_notes() -> list[str]:
    return list(NOTES)


@server.tool(description="The server's current date and time, in UTC.")
def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        import uvicorn

        port = int(sys.argv[2]) if len(sys.argv) > 2 else 8765
        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=port)
    else:
        server.run("stdio")
