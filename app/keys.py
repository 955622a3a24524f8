"""What replicas keep in Redis: the keys' names, and the small scripts that change them in
one step. Every key but the control channel expires (a lease, or RESUME_WINDOW)."""

PREFIX = "chat-relay"
CONTROL = f"{PREFIX}:control"  # the pub/sub channel: stop, attach, left

# Delete KEYS[1] if it still holds ARGV[1].
UNSET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Set KEYS[1] to ARGV[1] (expiring in ARGV[2] ms) unless it holds another value: a chat's
# pointer to its running answer, refreshed unless a newer answer took it over.
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
"""


def frames_key(stream_id: str) -> str:
    return f"{PREFIX}:frames:{stream_id}"


def owner_key(stream_id: str) -> str:
    return f"{PREFIX}:owner:{stream_id}"


def chat_key(chat_id: str) -> str:
    return f"{PREFIX}:chat:{chat_id}"


def reader_key(stream_id: str) -> str:
    return f"{PREFIX}:reader:{stream_id}"
