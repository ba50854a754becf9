"""structlog configuration: JSON lines when stderr is not a terminal, pretty when it is.

Modules take a logger with `get_logger()` and bind context once (a session's logger
carries ``session`` and ``harness`` on every line); event names are snake_case and
details are key-value fields, so tests and log processors can match on them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger"]


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Set up structlog for a process that runs the runtime (the daemon or the CLI)."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # Pretty output renders tracebacks itself; JSON needs them formatted into a field.
    exc: list[Any] = [structlog.processors.format_exc_info] if json else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *exc,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(**context: Any) -> Any:
    """A structlog logger with ``context`` bound."""
    return structlog.get_logger("agent_relay_runtime").bind(**context)
