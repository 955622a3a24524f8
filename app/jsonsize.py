"""How many JSON values a request body would become, counted on its bytes before a single
Python object is built.

A body may be 32 MiB for its attachments, and a base64 PDF is one string; 32 MB of `[],`
are ten million lists, which took 1.6 GB and 7 s of event loop to parse and refuse. So the
relay counts a body's containers and separators (`[`, `{` and `,` outside strings: every
value but the first of each container follows a `,`, so a body holds at most about twice
as many values as it has of these) and refuses it past MAX_JSON_VALUES.

The count costs C calls only, in pieces that stop as soon as the limit is passed:
- `bytes.count` of the three characters is an upper bound, exact when no string holds one
  of them (base64 has none): most bodies stop here;
- only past the limit are strings skipped: the first FEW_STRINGS one by one (a find and a
  match each), counting the stretches between them in pieces, so a body of empty lists is
  refused after its first piece; past those, each string being a key or a value, a body
  with more unescaped quotes than the limit allows is refused at once, and otherwise one C
  regular expression removes the strings and what is left is counted.

Measured (2 cores, shared): a 30 MB PDF body 30 ms (its bound is exact: base64 has none of
the three); 32 MB of `[],` or of nested metadata 4-6 ms; the worst crafted shape (200,000
strings full of commas, just under the limit) about 200 ms, 7 ms per MB.
"""

import re

from app.errors import ApiError

# Bytes counted per C call: the first pieces say whether a body of empty lists is too much.
PIECE = 1 << 20
# A JSON string: possessive, so no match attempt backtracks; an unterminated one runs to
# the end (or a lone backslash there), so every attempt succeeds and the pass is linear
# even on invalid JSON.
_STRING = re.compile(rb'"[^"\\]*+(?:\\[\s\S]?[^"\\]*+)*+(?:"|\Z)')


# Strings skipped one by one (a find and a match each) before the one C pass takes over,
# the stretches between them counted in pieces: a body of empty lists is refused after
# its first piece instead of being copied whole.
FEW_STRINGS = 256


def _tokens(body: bytes, start: int, end: int, budget: int) -> int:
    """`[`, `{` and `,` in `body[start:end]`, counted in pieces until past `budget`."""
    count = 0
    for piece in range(start, end, PIECE):
        stop = min(piece + PIECE, end)
        count += body.count(b"[", piece, stop) + body.count(b"{", piece, stop)
        count += body.count(b",", piece, stop)
        if count > budget:
            break
    return count


def _delimiters(body: bytes, budget: int) -> int:
    """Quotes with no backslash before them, counted in pieces until past `budget`."""
    count = 0
    for start in range(0, len(body), PIECE):
        end = start + PIECE
        # An escaped quote is counted in the piece its backslash is in.
        count += body.count(b'"', start, end) - body.count(b'\\"', start, end + 1)
        if count > budget:
            break
    return count


def json_values(body: bytes, limit: int) -> int:
    """The body's `[`, `{` and `,` outside strings; once that is known to pass `limit`,
    some number above it (the rest is not counted)."""
    count = _tokens(body, 0, len(body), limit)
    if count <= limit:
        return count  # exact or above, and within the limit: done
    count = position = 0
    for _ in range(FEW_STRINGS):  # strings one by one while they are few
        quote = body.find(b'"', position)
        end = len(body) if quote < 0 else quote
        count += _tokens(body, position, end, limit - count)
        if quote < 0 or count > limit:
            return count
        position = _STRING.match(body, quote).end()  # type: ignore[union-attr]
    # In valid JSON a string is a key or a value: at most two per container or separator,
    # and one more. A quote with no backslash before it opens or closes one.
    if _delimiters(body, 2 * (2 * limit + 1)) // 2 > 2 * limit + 1:
        return limit + 1
    outside = _STRING.sub(b"", body)  # one C pass; a copy of what is not in strings
    return _tokens(outside, 0, len(outside), limit)


def check_json_values(body: bytes, limit: int) -> int:
    """The body's JSON values, as `json_values` counts them (an upper bound); 413 for more
    than `limit` (MAX_JSON_VALUES)."""
    values = json_values(body, limit)
    if values > limit:
        raise ApiError(
            413,
            "request_too_large",
            f"The request body holds too many JSON values (at most about {limit} arrays, "
            "objects and commas).",
        )
    return values
