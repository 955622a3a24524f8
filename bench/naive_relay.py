"""The baseline: a relay written the way tutorials show it (FastAPI, sse-starlette and the
SDK's `messages.stream().text_stream`). Kept only to measure the product against; it is
not part of the product and is not deployed."""

from anthropic import AsyncAnthropic
from fastapi import FastAPI
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

app = FastAPI()
client = AsyncAnthropic()  # ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL from the environment


class Chat(BaseModel):
    message: str


@app.post("/api/chat")
async def chat(body: Chat) -> EventSourceResponse:
    async def events():
        async with client.messages.stream(
            model="claude-sonnet-5-5",
            max_tokens=1024,
            messages=[{"role": "user", "content": body.message}],
        ) as stream:
            async for text in stream.text_stream:
                yield {"event": "delta", "data": text}
        yield {"event": "done", "data": "{}"}

    return EventSourceResponse(events())
