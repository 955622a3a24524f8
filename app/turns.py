"""What a turn's content may hold, in either dialect: text, images and PDFs
(app/attachments.py), and the blocks of a tool loop: an assistant's `tool_use`, thinking and
server-tool blocks as the relay handed them out in `done.content`, a user's `tool_result`.

The checks here run before anything goes upstream: which role may carry which block, and
that tool calls and their results pair up (the API's rule), so a conversation the upstream
would refuse is a 422 naming the place, not an upstream 400.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from app.ask import NonEmptyText, Tally, Text
from app.attachments import DocumentBlock, ImageBlock, TextBlock, check_block
from app.config import Settings
from app.errors import invalid

Id = Annotated[StrictStr, Field(min_length=1, max_length=256)]
ToolName = Annotated[StrictStr, Field(min_length=1, max_length=128)]
# Server tools' blocks, sent back as they came (their encrypted fields included).
SERVER_RESULTS = (
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
)
ASSISTANT_ONLY = frozenset(
    {"tool_use", "server_tool_use", "thinking", "redacted_thinking", *SERVER_RESULTS}
)


class _Opaque(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolUseBlock(_Opaque):
    type: Literal["tool_use", "server_tool_use"]
    id: Id
    name: ToolName
    input: dict[str, Any]
    caller: dict[str, Any] | None = None


class ThinkingBlock(_Opaque):
    type: Literal["thinking"]
    thinking: Text
    signature: StrictStr


class RedactedThinkingBlock(_Opaque):
    type: Literal["redacted_thinking"]
    data: StrictStr


class ServerResultBlock(BaseModel):
    model_config = ConfigDict(extra="allow")  # as the API sent it: its business

    type: Literal[SERVER_RESULTS]  # type: ignore[valid-type]
    tool_use_id: Id


class CitedTextBlock(TextBlock):
    citations: list[dict[str, Any]] | None = None


class ToolResultBlock(_Opaque):
    type: Literal["tool_result"]
    tool_use_id: Id
    content: NonEmptyText | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]]
    is_error: StrictBool | None = None


Block = Annotated[
    CitedTextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ServerResultBlock,
    Field(discriminator="type"),
]
Blocks = Annotated[list[Block], Field(min_length=1)]


def check_turns(turns: list[dict[str, Any]], settings: Settings) -> Tally:
    """Check every block of the upstream-bound turns, its role and its attachments, and
    that tool calls and results pair up; 4xx on the first bad one."""
    tally = Tally()
    for t, turn in enumerate(turns):
        content, role = turn["content"], turn["role"]
        if isinstance(content, str):
            continue
        for b, block in enumerate(content):
            where, kind = f"messages.{t}.content.{b}", block["type"]
            if kind in ASSISTANT_ONLY and role != "assistant":
                raise invalid(f"{where}: a {kind} block belongs in an assistant turn")
            if kind == "tool_result":
                if role != "user":
                    raise invalid(f"{where}: a tool_result block belongs in a user turn")
                if isinstance(block["content"], list):
                    for n, part in enumerate(block["content"]):
                        check_block(part, role, f"{where}.content.{n}", settings, tally)
            elif kind in ("text", "image", "document"):
                check_block(block, role, where, settings, tally)
    check_pairs(turns)
    return tally


def check_pairs(turns: list[dict[str, Any]]) -> None:
    """Each `tool_result` answers a `tool_use` of the assistant turn just before it, and
    each `tool_use` is answered in the user turn just after it."""
    asked: list[str] = []
    for t, turn in enumerate(turns):
        content = turn["content"]
        blocks = content if isinstance(content, list) else []
        if turn["role"] == "assistant":
            if asked:
                raise invalid(f"messages.{t}: tool_use {asked[0][:64]} has no tool_result")
            asked = [block["id"] for block in blocks if block["type"] == "tool_use"]
            continue
        answered = {block["tool_use_id"] for block in blocks if block["type"] == "tool_result"}
        for b, block in enumerate(blocks):
            if block["type"] == "tool_result" and block["tool_use_id"] not in asked:
                raise invalid(
                    f"messages.{t}.content.{b}.tool_use_id: answers no tool_use of the "
                    "assistant turn just before it"
                )
        missing = [call for call in asked if call not in answered]
        if missing:
            raise invalid(f"messages.{t}: tool_use {missing[0][:64]} has no tool_result")
        asked = []
