"""The embedded demo upstream, used when no `ANTHROPIC_API_KEY` is set.

It is an httpx2 transport plugged into the real SDK client, and it answers in the real
Messages streaming wire format, so in demo mode every line of the relay runs exactly as it
does against the API: only the bytes come from here instead of the network.
"""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from app import demotools

DEMO_BASE_URL = "http://demo.chat-relay.invalid"
# Characters of one text counted word by word; a longer one's words are estimated from
# them. Splitting a whole 2 MB conversation took 49 MB and 100 ms of event loop.
WORDS_COUNTED = 1 << 16


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def _words(content: Any) -> int:
    """A turn's (or the system prompt's) words, counted on at most WORDS_COUNTED characters
    of each text."""
    texts = [content] if isinstance(content, str) else [b.get("text", "") for b in content]
    words = 0
    for text in texts:
        head = text[:WORDS_COUNTED]
        counted = len(head.split())
        words += counted if len(head) == len(text) else counted * len(text) // len(head)
    return words


def _usage(request: dict[str, Any]) -> dict[str, int]:
    """Input tokens (a word each), as the API reports them: with prompt caching, what
    earlier turns' requests wrote is read from the cache, and only the rest written."""
    sizes = [_words(m["content"]) for m in request["messages"]]
    system = _words(request.get("system") or "")
    last = request["messages"][-1]["content"]
    if isinstance(last, str) or "cache_control" not in last[-1]:
        return {"input_tokens": system + sum(sizes)}
    # The previous request's breakpoint was its last turn: all but the last two (the
    # answer to it and the new question) are in the cache.
    read = system + sum(sizes[:-2]) if len(sizes) > 2 else 0
    write = sum(sizes) + system - read
    return {
        "input_tokens": 0,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


def demo_answer(request: dict[str, Any]) -> str:
    turns = (len(request["messages"]) + 1) // 2
    return (
        "**Demo mode.** No `ANTHROPIC_API_KEY` is set, so this answer comes from "
        "chat-relay's built-in demo upstream, not from Claude.\n\n"
        f"You asked: “{demotools.question(request)}”{_attached(request)}\n\n"
        f"This conversation has {turns} user turn{'s' if turns != 1 else ''} so far. "
        "Everything you see travelled the real path: the official SDK opened a streaming "
        "request, the relay decoded each `content_block_delta` and forwarded it to you as "
        "its own Server-Sent Event the moment it arrived.\n\n"
        "- Press **Stop** (or Ctrl-C in curl) and the upstream request is cancelled at once.\n"
        "- Set `ANTHROPIC_API_KEY` and restart to talk to Claude for real."
    )


def _attached(request: dict[str, Any]) -> str:
    """What came with the question: the demo cannot see it, but says what arrived."""
    content = request["messages"][-1]["content"]
    files = [b["source"] for b in content if isinstance(content, list) and b["type"] != "text"]
    if not files:
        return ""
    sizes = ", ".join(
        f"{s['media_type']} of {len(s['data']) * 3 // 4 / 1024:,.0f} KB" for s in files[:5]
    )
    return f" with {len(files)} attachment{'s' if len(files) != 1 else ''} ({sizes})"


def demo_thinking(request: dict[str, Any]) -> str:
    return (
        f"The question is “{demotools.question(request)}”. This is the demo upstream, so there is "
        "nothing to work out: I will say what the relay did with it."
    )


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


async def _stream(request: dict[str, Any], delay: float) -> AsyncIterator[bytes]:
    model = request.get("model", "demo")
    usage = _usage(request)
    found, call = demotools.results(request), demotools.call_for(request)
    asked = demotools.question(request)
    searched = demotools.search(asked) if demotools.searches(request) else None
    if found:
        text = demotools.answer_to_results(found)
    elif call:
        text = f"**Demo mode.** The question names `{call[1]}`, so I call it. "
    else:
        text = demo_answer(request)
    # Words with their trailing whitespace: about one token each, and a human pace.
    answer = re.findall(r"\S+\s*|\s+", text)
    tokens = answer[: request["max_tokens"]]
    stop_reason = "end_turn" if len(tokens) == len(answer) else "max_tokens"
    thoughts = re.findall(r"\S+\s*", demo_thinking(request)) if "thinking" in request else []
    # Like a real upstream, keep only the answer: not the conversation (up to a MiB).
    del request, answer
    message = {
        "id": f"msg_demo_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield _event("message_start", {"type": "message_start", "message": message})
    yield _event("ping", {"type": "ping"})
    index = 0
    if thoughts:  # a thinking block first, signed, as the API streams one
        yield _block_start(index, {"type": "thinking", "thinking": ""})
        for thought in thoughts:
            await asyncio.sleep(delay)
            yield _delta(index, {"type": "thinking_delta", "thinking": thought})
        yield _delta(index, {"type": "signature_delta", "signature": "demo-signature"})
        yield _stop(index)
        index += 1
    text_block: dict[str, Any] = {"type": "text", "text": ""}
    if searched:  # a pretend web search, then an answer that cites it
        use, result, _ = searched
        yield _block_start(index, use)
        query = json.dumps({"query": asked[:100]})
        yield _delta(index, {"type": "input_json_delta", "partial_json": query})
        yield _stop(index)
        yield _block_start(index + 1, result)
        yield _stop(index + 1)
        index += 2
        text_block["citations"] = []
    yield _block_start(index, text_block)
    if searched:
        yield _delta(index, {"type": "citations_delta", "citation": searched[2]})
    for token in tokens:
        await asyncio.sleep(delay)
        yield _delta(index, {"type": "text_delta", "text": token})
    yield _stop(index)
    if call:  # a tool call, its input in three pieces
        call_id, name, arguments = call
        index += 1
        yield _block_start(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}})
        third = len(arguments) // 3 + 1
        for start in range(0, len(arguments), third):
            await asyncio.sleep(delay)
            piece = arguments[start : start + third]
            yield _delta(index, {"type": "input_json_delta", "partial_json": piece})
        yield _stop(index)
        stop_reason = "tool_use"
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": len(tokens)},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


def _stop(index: int) -> bytes:
    return _event("content_block_stop", {"type": "content_block_stop", "index": index})


class DemoTransport(httpx2.AsyncBaseTransport):
    def __init__(self, token_delay: float) -> None:
        self.token_delay = token_delay

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(await request.aread())
        headers = {
            "content-type": "text/event-stream",
            "request-id": f"req_demo_{uuid.uuid4().hex[:16]}",
        }
        return httpx2.Response(200, headers=headers, content=_stream(body, self.token_delay))
