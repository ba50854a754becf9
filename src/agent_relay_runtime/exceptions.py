"""Every error the runtime raises on purpose.

Callers catch the branch they care about; each error carries a one-line message that
names the problem and, where there is one, a ``code`` that the control API and the CLI
use as a stable identifier.

::

    RuntimeErrorBase
    ├── ConfigError                 bad configuration or input from the user
    │   ├── ProfileError            a harness profile file is invalid (file + key)
    │   ├── UnknownHarness
    │   ├── ExecutableNotFound
    │   ├── CwdNotFound
    │   └── InvalidRequest          a request body or argument that cannot be used
    ├── SessionError
    │   ├── NameInUse
    │   ├── SessionNotFound         unknown or already released session
    │   ├── SessionStartFailed      the process exited or never became ready
    │   └── SessionClosed           the session is releasing or gone
    ├── TransportError
    │   └── TransportClosed         the process or connection is gone
    ├── DeliveryFailed              an injection that has no evidence of arrival
    └── DaemonError
        ├── DaemonNotRunning
        └── DaemonUnauthorized
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CwdNotFound",
    "DaemonError",
    "DaemonNotRunning",
    "DaemonUnauthorized",
    "DeliveryFailed",
    "ExecutableNotFound",
    "InvalidRequest",
    "NameInUse",
    "ProfileError",
    "RuntimeErrorBase",
    "SessionClosed",
    "SessionError",
    "SessionNotFound",
    "SessionStartFailed",
    "TransportClosed",
    "TransportError",
    "UnknownHarness",
]


class RuntimeErrorBase(Exception):
    """Base of the tree; ``code`` is a stable snake_case identifier, ``status`` an HTTP code."""

    code = "runtime_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RuntimeErrorBase):
    code = "config_error"
    status = 400


class ProfileError(ConfigError):
    """A harness profile that cannot be used; the message names the file and the key."""

    code = "profile_error"

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key


class UnknownHarness(ConfigError):
    code = "unknown_harness"


class ExecutableNotFound(ConfigError):
    code = "executable_not_found"


class CwdNotFound(ConfigError):
    code = "cwd_not_found"


class InvalidRequest(ConfigError):
    code = "invalid_request"


class SessionError(RuntimeErrorBase):
    code = "session_error"
    status = 409


class NameInUse(SessionError):
    code = "name_in_use"


class SessionNotFound(SessionError):
    code = "session_not_found"
    status = 404


class SessionStartFailed(SessionError):
    code = "session_start_failed"
    status = 502


class SessionClosed(SessionError):
    code = "session_closed"


class TransportError(RuntimeErrorBase):
    code = "transport_error"


class TransportClosed(TransportError):
    code = "transport_closed"


class DeliveryFailed(RuntimeErrorBase):
    """An injection failed. ``retryable`` is False whenever the text may have landed."""

    code = "delivery_failed"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class DaemonError(RuntimeErrorBase):
    code = "daemon_error"


class DaemonNotRunning(DaemonError):
    code = "daemon_not_running"


class DaemonUnauthorized(DaemonError):
    code = "unauthorized"
    status = 401
