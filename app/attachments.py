"""Images and PDFs in a turn: the content blocks both dialects' turns may carry, and the one
check every attachment passes before admission, whichever dialect brought it.

The check is cheap and bounded: the sizes first (from the base64 length, no decoding), then
the alphabet in pieces of `PIECE` characters (a C `bytes.translate` per piece, 40 ms for
32 MB where a strict `a2b_base64` takes 200), then the magic number from the first bytes
decoded. Errors say where and what, never the data.
"""

import binascii
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from app.ask import NonEmptyText, Tally
from app.config import Settings
from app.errors import ApiError, invalid

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
PDF = "application/pdf"
# What a file's first bytes are, by its declared type (WebP: "RIFF", a size, then "WEBP").
MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    PDF: (b"%PDF-",),
}
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
PIECE = 1 << 20  # characters checked per C call: about 1 ms of event loop each


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["base64"]
    data: StrictStr


class ImageSource(_Source):
    media_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp"]


class PdfSource(_Source):
    media_type: Literal["application/pdf"]


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: NonEmptyText


class ImageBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["image"]
    source: ImageSource


class DocumentBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["document"]
    source: PdfSource
    title: Annotated[NonEmptyText, Field(max_length=500)] | None = None


def check_block(
    block: dict[str, Any], role: str, where: str, settings: Settings, tally: Tally
) -> None:
    """Check one content block (text passes), counting it in `tally`."""
    kind = block["type"]
    if kind == "text":
        return
    if role != "user":
        raise invalid(f"{where}: images and documents belong in user turns")
    source = block["source"]
    tally.nbytes += _check_data(source["data"], source["media_type"], where, settings)
    if kind == "image":
        tally.images += 1
        if tally.images > settings.max_images:
            raise invalid(f"messages: at most {settings.max_images} images in all")
    else:
        tally.documents += 1


def _check_data(data: str, media_type: str, where: str, settings: Settings) -> int:
    """The decoded size of one attachment's base64 `data`, once it is known to be sound."""
    size = len(data)
    # The API measures an image's limit on its base64 text, so the relay does too.
    if media_type != PDF and size > settings.max_image_bytes:
        raise ApiError(
            413,
            "request_too_large",
            f"{where}: an image may be at most {settings.max_image_bytes} bytes of base64 "
            f"(this one is {size}); scale it down",
        )
    if size == 0 or size % 4:
        raise invalid(f"{where}: not valid base64 (its length is not a multiple of 4)")
    # At most two `=`, only at the end (the rest must be the alphabet, which has none).
    pad = _padding(data)
    for start in range(0, size - pad, PIECE):
        piece = data[start : min(start + PIECE, size - pad)]
        if not piece.isascii() or piece.encode("ascii").translate(None, _BASE64):
            raise invalid(f"{where}: not valid base64")
    head = binascii.a2b_base64(data[:16])
    if not head.startswith(MAGIC[media_type]) or (
        media_type == "image/webp" and head[8:12] != b"WEBP"
    ):
        raise invalid(f"{where}: the bytes are not {_name(media_type)}")
    return size // 4 * 3 - pad


def decoded_size(data: str) -> int:
    """The bytes a sound base64 text decodes to."""
    return len(data) // 4 * 3 - _padding(data)


def _padding(data: str) -> int:
    # Counted at the end, not stripped: `rstrip` would copy up to 32 MB.
    return 2 if data.endswith("==") else 1 if data.endswith("=") else 0


def _name(media_type: str) -> str:
    return "a PDF" if media_type == PDF else f"a {media_type.removeprefix('image/').upper()} image"


def from_data_url(url: str, where: str) -> dict[str, Any]:
    """The content block for a UI `file` part's `data:` URL (the AI SDK's own encoding)."""
    header, comma, data = url[:64].partition(",")
    media_type = header.removeprefix("data:").removesuffix(";base64")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        raise invalid(f"{where}.url: a file must come as a base64 data: URL")
    if media_type not in MAGIC:
        allowed = ", ".join((*IMAGE_TYPES, PDF))
        raise invalid(f"{where}.url: files may be {allowed}")
    data = url[len(header) + 1 :]
    kind = "document" if media_type == PDF else "image"
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}}


def without_data(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation for a LOG_CONTENT line: each attachment's type and size, no data."""
    return [
        turn
        if isinstance(turn["content"], str)
        else {**turn, "content": [_described(block) for block in turn["content"]]}
        for turn in turns
    ]


def _described(block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] == "tool_result" and isinstance(block.get("content"), list):
        return {**block, "content": [_described(part) for part in block["content"]]}
    if block["type"] not in ("image", "document"):
        return block  # text, and a tool loop's blocks
    source = block["source"]
    size = decoded_size(source["data"])
    return {"type": block["type"], "media_type": source["media_type"], "bytes": size}
