"""Every setting the relay reads, from the environment or a `.env` file."""

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.mcpconfig import McpServer, check_servers, load_servers

# Anthropic's server tools a relay may enable (app/servertools.py keeps the same list).
SERVER_TOOLS = ("web_search", "web_fetch", "code_execution")

# Model names (prefixes) from before adaptive thinking: they think within a token budget.
BUDGET_MODELS = [
    "claude-3-",
    "claude-sonnet-4-0",
    "claude-sonnet-4-2",
    "claude-sonnet-4-5",
    "claude-opus-4-0",
    "claude-opus-4-1",
    "claude-opus-4-2",
    "claude-opus-4-5",
    "claude-haiku-4-5",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Upstream. With no key the relay serves the embedded demo upstream.
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    default_model: str = "claude-sonnet-5-5"
    allowed_models: Annotated[list[str], NoDecode] = []
    default_max_tokens: int = Field(1024, ge=1)
    max_tokens_limit: int = Field(8192, ge=1)

    # Request and stream limits. A body may be as large as the API's own request limit
    # (32 MB: images and PDFs travel as base64 in it).
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    # Bytes of request bodies one process holds at once: bodies being read, and
    # conversations waiting for their first delta (then they are dropped). Past it, 503 with
    # Retry-After: memory stays bounded however many large uploads arrive together.
    max_held_body_bytes: int = Field(128 * 1024 * 1024, ge=1)
    # Attachments, after the API's limits: an image's base64 text, and images per request.
    max_image_bytes: int = Field(5 * 1024 * 1024, ge=1)
    max_images: int = Field(100, ge=0)
    # Turns one conversation may hold: far more than people type, few enough that checking
    # them is cheap.
    max_turns: int = Field(1000, ge=1)
    # What a body may become, counted on its bytes before it is parsed (app/jsonsize.py):
    # its arrays, objects and commas outside strings. A PDF is one string; 32 MB of `[],`
    # are ten million lists. 1,000 turns of 4 parts take about 17,000, and 64 tools in
    # 256 KiB of JSON schema at most about 25,000.
    max_json_values: int = Field(100_000, ge=16)
    # Seconds a request body may take to arrive, plus a second per MIN_UPLOAD_RATE bytes
    # of it (a photo over a slow uplink), and how many may be arriving at once: a slow
    # upload holds a connection and what it has sent so far.
    request_timeout: float = Field(10.0, gt=0)
    min_upload_rate: int = Field(128 * 1024, ge=1)
    max_reading_requests: int = Field(64, ge=1)
    ping_interval: float = Field(15.0, gt=0)
    stream_idle_timeout: float = Field(60.0, gt=0)
    upstream_connect_timeout: float = Field(10.0, gt=0)
    # Seconds one write to the caller may wait (its buffers full: it stopped reading
    # without closing) before the stream ends and its slot is freed.
    send_timeout: float = Field(30.0, gt=0)

    # Who may stream, and how many at once. One stream costs well under 0.1 MB and, at a
    # typical 20 deltas/s, well under 1 ms of CPU per second: 1,000 fit one core.
    relay_token: SecretStr | None = None
    # Callers with identities (app/identity.py), in the order a request is identified: a
    # trusted proxy's header (believed only from FORWARDED_ALLOW_IPS, uvicorn's own setting,
    # read here too: the app rewrites the client address itself), then a bearer token, one
    # of RELAY_TOKENS (`name:token,...`, or `@path` to a file of one a line), then a JWT.
    relay_tokens: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_public_key: str | None = None  # PEM, or `@path`
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = ["RS256", "ES256", "EdDSA"]
    trusted_user_header: str | None = None
    forwarded_allow_ips: str = "127.0.0.1"
    max_concurrent_streams: int = Field(1000, ge=1)
    max_streams_per_client: int = Field(20, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = []
    # Host names the API answers to (DNS rebinding): empty means localhost and IP literals
    # only; "*" any.
    allowed_hosts: Annotated[list[str], NoDecode] = []

    # Failures before the first delta reached the caller are retried, with backoff.
    upstream_retries: int = Field(2, ge=0)
    upstream_retry_backoff: float = Field(0.5, ge=0)

    # Operations: the API docs (/docs, /redoc, /openapi.json) only when asked for, and
    # the metrics on a port of their own when METRICS_PORT is set (0: /metrics here).
    api_docs: bool = False
    metrics_port: int = Field(0, ge=0, le=65535)

    # Seconds a resumable stream (`"resumable": true`) waits for its caller to come back,
    # and a finished one stays readable; 0 turns resuming off.
    resume_window: float = Field(30.0, ge=0)
    # More than one replica: resumable streams, stops and the per-client limit shared
    # through Redis. A replica that dies lets go of its streams' client leases within
    # REDIS_LEASE_SECONDS.
    redis_url: SecretStr | None = None
    redis_lease_seconds: float = Field(10.0, gt=0)

    # Thinking on request (`"thinking": true`): adaptive thinking with a summarized display,
    # except on models whose names start with one of THINKING_BUDGET_MODELS (the ones from
    # before adaptive thinking), which get THINKING_BUDGET_TOKENS on top of max_tokens.
    thinking_budget_models: Annotated[list[str], NoDecode] = BUDGET_MODELS
    thinking_budget_tokens: int = Field(4096, ge=1024)

    # Prompt caching: `auto` marks each request's system prompt and last turn for caching, so
    # a conversation's next turn reads its prefix at a tenth of the price; `off` does not.
    # The cache lives 5 minutes (`5m`) or an hour (`1h`, written at twice the price).
    prompt_caching: Literal["auto", "off"] = "auto"
    prompt_cache_ttl: Literal["5m", "1h"] = "5m"

    # Tools. A caller's definitions are bounded before validation: how many, and their
    # bytes as JSON. SERVER_TOOLS (web_search, web_fetch, code_execution; each use is billed)
    # adds Anthropic's server tools to every request, at the newest versions the SDK knows,
    # the web ones with SERVER_TOOL_MAX_USES and a domain allow or block list. An answer
    # makes at most MAX_TOOL_STEPS upstream requests (a paused turn is continued).
    max_tools: int = Field(64, ge=0)
    max_tool_bytes: int = Field(256 * 1024, ge=1)
    server_tools: Annotated[list[str], NoDecode] = []
    server_tool_max_uses: int = Field(5, ge=1)
    web_allowed_domains: Annotated[list[str], NoDecode] = []
    web_blocked_domains: Annotated[list[str], NoDecode] = []
    max_tool_steps: int = Field(8, ge=1)
    # The operator's MCP servers (JSON inline, or @path): their tools run next to the relay,
    # offered to Claude as mcp__<server>__<tool>. A call may take MCP_TOOL_TIMEOUT seconds
    # (or its server's `timeout`); its result at most MAX_TOOL_RESULT_BYTES; at most
    # MCP_CALLS_PER_STREAM run at once per answer and MCP_MAX_CALLS per process. A server
    # that is down is tried again after MCP_RECONNECT_SECONDS, doubling up to 30 s.
    mcp_servers: Annotated[list[McpServer], NoDecode] = []
    mcp_tool_timeout: float = Field(60.0, gt=0)
    max_tool_result_bytes: int = Field(100_000, ge=1)
    mcp_calls_per_stream: int = Field(4, ge=1)
    mcp_max_calls: int = Field(64, ge=1)
    mcp_reconnect_seconds: float = Field(0.5, gt=0)

    shutdown_grace_seconds: float = Field(20.0, ge=0)
    log_content: bool = False

    # Seconds between demo tokens: a human reading pace by default.
    demo_token_delay: float = Field(0.04, ge=0)

    log_level: str = "INFO"

    @field_validator(
        "allowed_models",
        "cors_origins",
        "allowed_hosts",
        "thinking_budget_models",
        "server_tools",
        "web_allowed_domains",
        "web_blocked_domains",
        "jwt_algorithms",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @field_validator("thinking_budget_models", mode="before")
    @classmethod
    def _default_budget_models(cls, value: object) -> object:
        # Left empty (as in .env.example): the list above, not "no model needs a budget".
        return BUDGET_MODELS if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names_in_lower_case(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]  # once here, not per request

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        # HMAC would take the public key as a shared secret (anyone could sign), and
        # `none` signs nothing.
        if not value or any(a.lower() == "none" or a.upper().startswith("HS") for a in value):
            raise ValueError("JWT_ALGORITHMS: asymmetric algorithms only (RS256, ES256, ...)")
        return value

    @field_validator(
        "anthropic_api_key",
        "relay_token",
        "redis_url",
        "relay_tokens",
        "jwt_jwks_url",
        "jwt_public_key",
        "jwt_issuer",
        "jwt_audience",
        "trusted_user_header",
        mode="before",
    )
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        # `ANTHROPIC_API_KEY=` in a .env file means "no key" (demo mode); likewise the token.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _load_mcp_servers(cls, value: object) -> object:
        return load_servers(value)

    @field_validator("mcp_servers")
    @classmethod
    def _check_mcp_servers(cls, value: list[McpServer]) -> list[McpServer]:
        return check_servers(value)

    @field_validator("server_tools")
    @classmethod
    def _known_server_tools(cls, value: list[str]) -> list[str]:
        unknown = [tool for tool in value if tool not in SERVER_TOOLS]
        if unknown:
            raise ValueError(
                f"SERVER_TOOLS: unknown {unknown[0]!r} (known: {', '.join(SERVER_TOOLS)})"
            )
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _one_domain_list(self) -> "Settings":
        if self.web_allowed_domains and self.web_blocked_domains:  # the API's rule
            raise ValueError("set WEB_ALLOWED_DOMAINS or WEB_BLOCKED_DOMAINS, not both")
        return self

    @model_validator(mode="after")
    def _default_model_is_allowed(self) -> "Settings":
        # Otherwise every request that names no model would be refused.
        if self.allowed_models and self.default_model not in self.allowed_models:
            raise ValueError(
                f"DEFAULT_MODEL ({self.default_model!r}) must be one of ALLOWED_MODELS "
                f"({', '.join(self.allowed_models)})"
            )
        return self

    @model_validator(mode="after")
    def _a_body_fits_the_budget(self) -> "Settings":
        if self.max_body_bytes > self.max_held_body_bytes:
            raise ValueError(
                f"MAX_BODY_BYTES ({self.max_body_bytes}) must not exceed MAX_HELD_BODY_BYTES "
                f"({self.max_held_body_bytes}): such a body could never be read"
            )
        return self

    @property
    def mode(self) -> str:
        return "live" if self.anthropic_api_key or self.anthropic_base_url else "demo"
