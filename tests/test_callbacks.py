"""The loopback callback endpoint that CLIs' hooks report to."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agent_relay_runtime.supervisor import Supervisor

pytestmark = pytest.mark.anyio


async def test_a_registered_url_calls_its_handler_and_answers(supervisor: Supervisor) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {"continue": True}

    url, unregister = await supervisor._ctx.callback(handler)
    assert url.startswith("http://127.0.0.1:") and "/cb/" in url
    async with httpx.AsyncClient() as http:
        reply = await http.post(url, json={"hook_event_name": "Stop"})
        assert reply.status_code == 200 and reply.json() == {"continue": True}
        assert seen == [{"hook_event_name": "Stop"}]
        bad = await http.post(url, content=b"not json")
        assert bad.status_code == 400
        guessed = await http.post(url.rsplit("/", 1)[0] + "/guess", json={})
        assert guessed.status_code == 404
        unregister()
        assert (await http.post(url, json={})).status_code == 404
