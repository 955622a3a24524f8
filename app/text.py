"""Text for log lines: escaped, bounded, and without capabilities. A leaf: it imports nothing
of the relay, so every room (errors, upstream, telemetry) can use it."""

import hashlib
import json
import re

# The path segment after /api/chat/ names a stream: it is the capability to read and stop it.
_CAPABILITY = re.compile(r"(/api/chat/)([^/?#\s]+)")


def printable(value: object, limit: int = 300) -> str:
    """`value` for a log line: escaped to printable ASCII, on one line, bounded."""
    text = str(value)
    escaped = json.dumps(text[:limit])[1:-1]
    return escaped + ("..." if len(text) > limit else "")


def redact(path: str) -> str:
    """`path` for a log line, with a stream id replaced by a short hash of it: lines about
    one stream can still be joined, but not used to read or stop it."""
    return _CAPABILITY.sub(
        lambda m: m[1] + "~" + hashlib.sha256(m[2].encode()).hexdigest()[:12], path
    )
