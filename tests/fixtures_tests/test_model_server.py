"""The scripted model server, exercised over HTTP without any agent CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from model_server import ModelServerProcess, Script, ScriptedModelServer, Turn

WRITE = {"name": "Write", "input": {"file_path": "a.txt", "content": "hi"}}
TOOLS = [{"name": "Write", "input_schema": {"type": "object"}}]
CHAT_TOOLS = [{"type": "function", "function": {"name": "write", "parameters": {}}}]
RESPONSES_TOOLS = [
    {"type": "function", "name": "exec_command", "parameters": {}},
    {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
    {"type": "local_shell"},
]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


def serve(*turns: Any, **script: Any) -> ScriptedModelServer:
    return ScriptedModelServer({"turns": list(turns), **script})


def events(response: httpx.Response) -> list[Any]:
    """The JSON payloads of a server-sent event stream (``[DONE]`` kept as a string)."""
    found: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def stream(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return events(response)


# ---------------------------------------------------------------------------------------
# Anthropic Messages


def test_anthropic_stream_text_then_tool(client: httpx.Client) -> None:
    with serve({"text": "Writing the file.", "tool": WRITE}) as server:
        body = {"model": "claude-x", "messages": [{"role": "user", "content": "go"}]}
        got = stream(client, f"{server.url}/v1/messages?beta=true", {**body, "tools": TOOLS})
    kinds = [event["type"] for event in got]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert got[0]["message"]["model"] == "claude-x"
    starts = [event["content_block"] for event in got if event["type"] == "content_block_start"]
    assert [block["type"] for block in starts] == ["text", "tool_use"]
    assert starts[1]["name"] == "Write" and starts[1]["id"].startswith("toolu_")
    deltas = [event for event in got if event["type"] == "content_block_delta"]
    text = "".join(e["delta"]["text"] for e in deltas if e["delta"]["type"] == "text_delta")
    partial = "".join(
        e["delta"]["partial_json"] for e in deltas if e["delta"]["type"] == "input_json_delta"
    )
    assert text == "Writing the file."
    assert len([e for e in deltas if e["delta"]["type"] == "text_delta"]) > 1
    assert json.loads(partial) == WRITE["input"]
    assert got[-2]["delta"]["stop_reason"] == "tool_use"
    assert got[-2]["usage"]["output_tokens"] > 0


def test_anthropic_non_streaming_and_turn_order(client: httpx.Client) -> None:
    with serve({"tool": WRITE}, {"text": "Done."}) as server:
        url = f"{server.url}/v1/messages"
        body = {"model": "m", "messages": [], "tools": TOOLS}
        first = client.post(url, json=body).json()
        second = client.post(url, json=body).json()
        third = client.post(url, json=body).json()
    assert first["stop_reason"] == "tool_use"
    assert first["content"][0] == {**first["content"][0], "type": "tool_use", **WRITE}
    assert second["stop_reason"] == "end_turn"
    assert second["content"] == [{"type": "text", "text": "Done."}]
    assert third["content"] == [{"type": "text", "text": "ok"}]  # the default when turns run out
    assert second["usage"]["input_tokens"] > 0


def test_anthropic_probe_count_tokens_and_models(client: httpx.Client) -> None:
    with serve({"text": "x"}) as server:
        assert client.head(f"{server.url}/").status_code == 200
        assert client.get(f"{server.url}/").status_code == 200
        count = client.post(
            f"{server.url}/v1/messages/count_tokens?beta=true",
            json={"model": "m", "messages": [{"role": "user", "content": "hello " * 40}]},
        ).json()
        models = client.get(f"{server.url}/v1/models").json()
        assert server.state.queue.remaining() == 1  # none of these consumed the turn
    assert count["input_tokens"] > 10
    assert models["data"][0]["id"] and models["object"] == "list"


def test_side_requests_do_not_consume_turns(client: httpx.Client) -> None:
    """A request without tools (title generation, quota probe) gets the side text; a
    structured-output one gets JSON matching the schema."""
    title_format = {
        "type": "json_schema",
        "schema": {
            "type": "object",
            "properties": {"title": {"type": "string"}},
            "required": ["title"],
        },
    }
    with serve({"text": "main"}, side_text="A title") as server:
        url = f"{server.url}/v1/messages"
        side = client.post(url, json={"model": "m", "messages": [], "tools": []}).json()
        titled = client.post(
            url, json={"model": "m", "messages": [], "output_config": {"format": title_format}}
        ).json()
        main = client.post(url, json={"model": "m", "messages": [], "tools": TOOLS}).json()
        kinds = [(entry["kind"], entry["turn"]) for entry in server.requests]
    assert side["content"][0]["text"] == "A title"
    assert json.loads(titled["content"][0]["text"]) == {"title": "A title"}
    assert main["content"][0]["text"] == "main"
    assert kinds == [("side", None), ("side", None), ("turn", 0)]


def test_error_turn(client: httpx.Client) -> None:
    with serve({"error": {"status": 400, "message": "bad"}}) as server:
        reply = client.post(f"{server.url}/v1/messages", json={"messages": [], "tools": TOOLS})
    assert reply.status_code == 400
    assert reply.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"},
    }


# ---------------------------------------------------------------------------------------
# OpenAI Responses


def test_responses_stream_function_and_custom_tools(client: httpx.Client) -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    turn = {
        "text": "Running.",
        "tools": [
            {"name": "exec_command", "input": {"cmd": "echo hi"}},
            {"name": "apply_patch", "input": patch},
        ],
    }
    with serve(turn) as server:
        body = {"model": "gpt-x", "input": [], "tools": RESPONSES_TOOLS}
        got = stream(client, f"{server.url}/v1/responses", body)
    kinds = [event["type"] for event in got]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [event["sequence_number"] for event in got] == list(range(len(got)))
    text = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
    assert text == "Running."
    done = [event["item"] for event in got if event["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["message", "function_call", "custom_tool_call"]
    call, custom = done[1], done[2]
    assert call["name"] == "exec_command" and json.loads(call["arguments"]) == {"cmd": "echo hi"}
    assert call["call_id"].startswith("call_")
    assert custom["name"] == "apply_patch" and custom["input"] == patch
    arguments = "".join(
        e["delta"] for e in got if e["type"] == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"cmd": "echo hi"}
    final = got[-1]["response"]
    assert final["status"] == "completed" and final["output"] == done
    usage = final["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_responses_non_streaming_and_local_shell(client: httpx.Client) -> None:
    shell = {"name": "local_shell", "input": {"command": ["bash", "-lc", "ls"]}}
    with serve({"tool": shell}, {"text": "bye"}) as server:
        url = f"{server.url}/v1/responses"
        body = {"model": "m", "input": [], "tools": RESPONSES_TOOLS}
        first = client.post(url, json=body).json()
        second = client.post(url, json=body).json()
    item = first["output"][0]
    assert item["type"] == "local_shell_call"
    assert item["action"]["type"] == "exec" and item["action"]["command"][-1] == "ls"
    assert second["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "bye",
        "annotations": [],
    }


# ---------------------------------------------------------------------------------------
# Chat Completions


def test_chat_stream_text_and_tool_calls(client: httpx.Client) -> None:
    calls = [
        {"name": "write", "input": {"filePath": "a.txt", "content": "x"}},
        {"name": "bash", "input": {"command": "ls"}},
    ]
    with serve({"text": "On it.", "tools": calls}) as server:
        body = {"model": "m", "messages": [], "tools": CHAT_TOOLS}
        got = stream(client, f"{server.url}/v1/chat/completions", body)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0]["role"] == "assistant"
    assert "".join(delta.get("content") or "" for delta in deltas) == "On it."
    assembled: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for piece in delta.get("tool_calls", []):
            slot = assembled.setdefault(piece["index"], {"name": "", "arguments": "", "id": ""})
            slot["id"] += piece.get("id", "")
            slot["name"] += piece["function"].get("name", "")
            slot["arguments"] += piece["function"].get("arguments", "")
    assert [slot["name"] for slot in assembled.values()] == ["write", "bash"]
    assert json.loads(assembled[0]["arguments"]) == calls[0]["input"]
    assert all(slot["id"].startswith("call_") for slot in assembled.values())
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert last["usage"]["total_tokens"] > 0


def test_chat_non_streaming(client: httpx.Client) -> None:
    with serve({"tool": {"name": "write", "input": {"a": 1}}}, "plain text turn") as server:
        url = f"{server.url}/v1/chat/completions"
        body = {"model": "m", "messages": [], "tools": CHAT_TOOLS}
        first = client.post(url, json=body).json()
        second = client.post(url, json=body).json()
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "write",
        "arguments": '{"a": 1}',
    }
    assert second["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "plain text turn"},
        "finish_reason": "stop",
    }


def test_chat_json_mode_side_request(client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}}
    with serve(side_text="t") as server:
        reply = client.post(
            f"{server.url}/v1/chat/completions",
            json={
                "messages": [],
                "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
            },
        ).json()
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"n": 0, "s": "t"}


# ---------------------------------------------------------------------------------------
# One queue, the log, control endpoints, delays


def test_one_queue_across_apis_and_request_log(client: httpx.Client) -> None:
    with serve("first", "second", "third") as server:
        headers = {"x-api-key": "sk-secret", "authorization": "Bearer sk-secret"}
        a = client.post(
            f"{server.url}/v1/messages",
            json={"messages": [], "tools": TOOLS},
            headers=headers,
        ).json()
        r = client.post(f"{server.url}/v1/responses", json={"input": [], "tools": RESPONSES_TOOLS})
        c = client.post(
            f"{server.url}/v1/chat/completions", json={"messages": [], "tools": CHAT_TOOLS}
        )
        log = client.get(f"{server.url}/_requests").json()
        assert log == server.requests
    assert a["content"][0]["text"] == "first"
    assert r.json()["output"][0]["content"][0]["text"] == "second"
    assert c.json()["choices"][0]["message"]["content"] == "third"
    assert [(e["api"], e["turn"]) for e in log] == [("anthropic", 0), ("responses", 1), ("chat", 2)]
    assert [e["seq"] for e in log] == [0, 1, 2]
    first = log[0]
    assert first["method"] == "POST" and first["path"] == "/v1/messages"
    assert first["body"] == {"messages": [], "tools": TOOLS}
    assert first["headers"]["x-api-key"] == "<redacted>"
    assert first["headers"]["authorization"] == "<redacted>"
    assert "sk-secret" not in json.dumps(log)


def test_turns_added_while_running(client: httpx.Client) -> None:
    with serve() as server:
        url = f"{server.url}/v1/chat/completions"
        body = {"messages": [], "tools": CHAT_TOOLS}
        server.add_turns({"text": "added in process"})
        added = client.post(f"{server.url}/_turns", json={"turns": ["added over http"]})
        assert added.json() == {"remaining": 2}
        texts = [
            client.post(url, json=body).json()["choices"][0]["message"]["content"] for _ in "abc"
        ]
        state = client.get(f"{server.url}/_state").json()
        assert client.post(f"{server.url}/_turns", json={"turns": [{}]}).status_code == 400
        assert client.delete(f"{server.url}/_requests").status_code == 204
        assert server.requests == []
    assert texts == ["added in process", "added over http", "ok"]
    assert state == {"consumed": 2, "remaining": 0}


def test_unknown_paths_are_logged_404(client: httpx.Client) -> None:
    with serve() as server:
        assert client.get(f"{server.url}/npm/@scope/pkg").status_code == 404
        assert server.requests[0]["path"] == "/npm/@scope/pkg"
        assert server.requests[0]["kind"] == "other"


def test_delay(client: httpx.Client) -> None:
    with serve({"text": "late", "delay": 0.3}) as server:
        start = time.monotonic()
        reply = client.post(f"{server.url}/v1/messages", json={"messages": [], "tools": TOOLS})
        assert time.monotonic() - start >= 0.3
    assert reply.json()["content"][0]["text"] == "late"


def test_paths_without_v1_prefix(client: httpx.Client) -> None:
    with serve("a", "b") as server:
        chat = client.post(f"{server.url}/chat/completions", json={"tools": CHAT_TOOLS})
        responses = client.post(f"{server.url}/responses", json={"tools": RESPONSES_TOOLS})
    assert chat.json()["choices"][0]["message"]["content"] == "a"
    assert responses.json()["output"][0]["content"][0]["text"] == "b"


# ---------------------------------------------------------------------------------------
# Script parsing and the ways to run the server


def test_script_parsing(tmp_path: Any) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"turns": [{"text": "a", "tool": WRITE}], "default_text": "d"}))
    for source in (path, str(path), path.read_text()):
        script = Script.parse(source)
        assert script.default_text == "d"
        assert script.turns[0].tools[0].name == "Write"
    assert Script.parse(["x"]).turns == [Turn(text="x")]
    assert Script.parse(None).turns == []
    bad_turns: list[Any] = [{}, {"tool": {"input": {}}}, {"txt": "typo"}, {"error": {"x": 1}}, 3]
    for bad in bad_turns:
        with pytest.raises(ValueError):
            Turn.parse(bad)


@pytest.mark.anyio
async def test_async_context_manager() -> None:
    async with (
        ScriptedModelServer({"turns": ["async"]}) as server,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        reply = await http.post(
            f"{server.url}/v1/messages", json={"messages": [], "tools": TOOLS, "stream": True}
        )
        assert '"text":"async"' in reply.text
        assert len(server.model_requests("turn")) == 1


def test_subprocess_server(client: httpx.Client) -> None:
    with ModelServerProcess({"turns": ["from the subprocess"]}) as server:
        assert server.url.startswith("http://127.0.0.1:")
        reply = client.post(f"{server.url}/v1/messages", json={"messages": [], "tools": TOOLS})
        server.add_turns("appended")
        again = client.post(f"{server.url}/v1/messages", json={"messages": [], "tools": TOOLS})
        log = server.requests
    assert reply.json()["content"][0]["text"] == "from the subprocess"
    assert again.json()["content"][0]["text"] == "appended"
    assert [entry["turn"] for entry in log] == [0, 1]
