"""Anthropic's server tools, by setting (SERVER_TOOLS): the tool definitions every upstream
request then carries, and what a page may see of their results and citations.

Their results hold encrypted content (search results, a fetched page's text, encrypted
stdout) that the API needs back on the next turn but nobody should read: the summaries here
name what a page can show (URLs, titles, stdout) and nothing encrypted. Only `done.content`
carries the blocks whole, for the caller to send back.
"""

import re
from functools import cache
from typing import Any

import anthropic.types

WEB_TOOLS = ("web_search", "web_fetch")
# The usage counters the API reports per server tool (`usage.server_tool_use`): a fixed set,
# so they can be metric labels.
USAGE_KEYS = ("web_search_requests", "web_fetch_requests", "code_execution_requests")
_ERROR_CODE = 64  # characters of an upstream error code shown


@cache
def newest_version(tool: str) -> str:
    """The newest type of a server tool the installed SDK knows, e.g. `web_search_20260318`:
    read from its type names (`WebSearchTool20260318Param`), so upgrading the SDK is all it
    takes to move on."""
    camel = "".join(part.title() for part in tool.split("_")) + "Tool"
    pattern = re.compile(re.escape(camel) + r"(\d{8})Param")
    dates = [m.group(1) for name in dir(anthropic.types) if (m := pattern.fullmatch(name))]
    if not dates:
        raise ValueError(f"the installed anthropic SDK knows no {tool} tool")
    return f"{tool}_{max(dates)}"


def definitions(
    tools: list[str], max_uses: int, allowed: list[str], blocked: list[str]
) -> list[dict[str, Any]]:
    """The `tools` entries for SERVER_TOOLS, at their newest versions."""
    result = []
    for tool in tools:
        definition: dict[str, Any] = {"type": newest_version(tool), "name": tool}
        if tool in WEB_TOOLS:
            definition["max_uses"] = max_uses
            if allowed:
                definition["allowed_domains"] = allowed
            elif blocked:
                definition["blocked_domains"] = blocked
        result.append(definition)
    return result


def result_of(block: dict[str, Any]) -> tuple[Any, str | None]:
    """A server tool result block's summary for a page, or its error code."""
    content = block.get("content")
    if isinstance(content, dict) and "error_code" in content:
        return None, str(content["error_code"])[:_ERROR_CODE]
    kind = block["type"]
    if kind == "web_search_tool_result" and isinstance(content, list):
        return [
            {"url": r.get("url"), "title": r.get("title"), "page_age": r.get("page_age")}
            for r in content
            if isinstance(r, dict)
        ], None
    if not isinstance(content, dict):
        return {"type": kind}, None
    if kind == "web_fetch_tool_result":
        document = content.get("content")
        title = document.get("title") if isinstance(document, dict) else None
        return {"url": content.get("url"), "title": title}, None
    if "return_code" in content:  # code execution, Python or bash (encrypted stdout: not shown)
        return {
            "stdout": content.get("stdout", ""),
            "stderr": content.get("stderr", ""),
            "return_code": content.get("return_code"),
        }, None
    return {"type": content.get("type", kind)}, None


def citation_of(citation: dict[str, Any]) -> dict[str, Any] | None:
    """What a page shows of a citation: `{type, url, title, cited_text}` (no encrypted
    index); a document's citation has no URL."""
    kind = citation.get("type")
    if not isinstance(kind, str):
        return None
    if kind == "web_search_result_location":
        url, title = citation.get("url"), citation.get("title")
    elif kind == "search_result_location":
        url, title = citation.get("source"), citation.get("title")
    else:  # char, page or content block location in a document the caller sent
        url, title = None, citation.get("document_title")
    return {"type": kind, "url": url, "title": title, "cited_text": citation.get("cited_text")}
