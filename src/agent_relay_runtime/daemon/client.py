"""A small synchronous client of the control API (what the CLI uses).

It finds the daemon through ``daemon.json`` in the data dir, authenticates with the
token file next to it, and turns every failure into a `RuntimeErrorBase` with a
one-line message: the daemon is not running, the token is wrong, or the API's own error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ..exceptions import DaemonNotRunning, DaemonUnauthorized, RuntimeErrorBase
from .state import DataDir

__all__ = ["DaemonClient", "RemoteError"]


class RemoteError(RuntimeErrorBase):
    """An error the daemon reported, with its code and HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class DaemonClient:
    def __init__(self, data_dir: Path, *, timeout: float = 30.0) -> None:
        data = DataDir(data_dir)
        state = data.read_state()
        if state is None:
            raise DaemonNotRunning(
                f"daemon is not running (no {data.state_file}); "
                "start it with `agent-relay-runtime serve`"
            )
        self.url = str(state["url"])
        token = data.read_token()
        headers = {"Authorization": f"Bearer {token}"}
        if self.url.startswith("unix:"):
            transport = httpx.HTTPTransport(uds=self.url[5:])
            base = "http://agent-relay-runtime"
        else:
            transport = httpx.HTTPTransport()
            base = self.url
        self._http = httpx.Client(
            base_url=base, headers=headers, transport=transport, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call the API; the decoded JSON body (or bytes for non-JSON responses)."""
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                params=params,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise DaemonNotRunning(
                f"daemon is not running (cannot connect to {self.url}: {exc})"
            ) from None
        except httpx.TimeoutException:
            raise RuntimeErrorBase(f"the daemon did not answer {method} {path} in time") from None
        return self._decode(response)

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        """GET ``path`` and yield its body line by line as it arrives."""
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._decode(response)
                for line in response.iter_lines():
                    if line:
                        yield line.encode()
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise DaemonNotRunning(f"lost the daemon at {self.url}: {exc}") from None

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code == 401:
            raise DaemonUnauthorized(
                "the daemon refused the token (is the token file from another daemon?)"
            )
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if response.status_code >= 400:
            if is_json:
                error = response.json().get("error", {})
                raise RemoteError(
                    str(error.get("code", "error")),
                    str(error.get("message", response.text)),
                    response.status_code,
                )
            raise RemoteError("http_error", response.text.strip(), response.status_code)
        return response.json() if is_json else response.content
