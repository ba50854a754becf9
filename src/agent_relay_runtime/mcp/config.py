"""Where the MCP server's relay is and whose token it acts with.

The interface is fixed (every spawned session is wired to it): the relay URL from
``--relay-url`` or ``$RELAY_BASE_URL``; the agent's own token from ``--token-file PATH``
or ``$RELAY_AGENT_TOKEN``; ``$RELAY_AGENT_NAME`` for display only (the relay knows who
a token belongs to). A flag given wins over the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import ConfigError

__all__ = ["McpConfig"]


@dataclass(frozen=True)
class McpConfig:
    relay_url: str
    token: str = field(repr=False)  # kept out of logs and tracebacks
    agent_name: str | None = None

    @classmethod
    def resolve(
        cls, env: Mapping[str, str], *, relay_url: str | None, token_file: str | None
    ) -> McpConfig:
        """The configuration from the flags and ``env``; `ConfigError` (one line) when
        the relay URL or the token is missing or unreadable."""
        url = (relay_url or env.get("RELAY_BASE_URL") or "").strip()
        if not url:
            raise ConfigError("no relay URL: pass --relay-url or set RELAY_BASE_URL")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"relay URL {url!r}: expected http://… or https://…")
        token = _token_from(token_file) if token_file else env.get("RELAY_AGENT_TOKEN", "")
        if not token.strip():
            raise ConfigError(
                "no agent token: set RELAY_AGENT_TOKEN or pass --token-file PATH"
                + (f" ({token_file} is empty)" if token_file else "")
            )
        return cls(url, token.strip(), env.get("RELAY_AGENT_NAME") or None)


def _token_from(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--token-file {path}: {reason}") from None
