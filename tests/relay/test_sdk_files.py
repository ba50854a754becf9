"""Files and attachments through the official relaycast-sdk client, unmodified, plus raw
HTTP for what the SDK leaves to the caller (sending the bytes to ``upload_url``)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from relay_sdk import AsyncRelay, RelayError
from relay_sdk.models import FileAttachment

from agent_relay_runtime.relay.rest.files import MAX_FILE_BYTES

from .conftest import RunningRelay

pytestmark = pytest.mark.anyio


def files_dir(relay: RunningRelay) -> Path:
    return relay.store.path.with_name("relay-files")


async def put(url: str, token: str, content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    async with httpx.AsyncClient() as raw:
        return await raw.put(url, content=content, headers={"Authorization": f"Bearer {token}"})


async def test_a_file_is_uploaded_completed_attached_and_read_back(relay: RunningRelay) -> None:
    data = b"release notes\n" * 100
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        carol = await client.agents.register("carol")
        a, b, c = (client.as_agent(x.token) for x in (alice, bob, carol))
        await a.channels.create("general")
        await b.channels.join("general")

        upload = await a.files.upload("notes.txt", "text/plain", len(data))
        assert upload.upload_url == f"{relay.url}/v1/files/{upload.file_id}/content"
        assert upload.expires_at > (await a.me()).created_at
        stored = await put(upload.upload_url, alice.token, data)
        assert stored.status_code == 200, stored.text
        assert stored.json()["data"]["size"] == len(data)
        info = await a.files.complete(upload.file_id)
        assert (info.file_id, info.filename, info.content_type) == (
            upload.file_id,
            "notes.txt",
            "text/plain",
        )
        assert (info.size, info.uploaded_by) == (len(data), "alice")
        assert (await a.files.complete(upload.file_id)) == info  # completing twice: the same
        assert (files_dir(relay) / upload.file_id).read_bytes() == data

        message = await a.send("general", "see attached", attachments=[upload.file_id])
        attachment = FileAttachment(
            file_id=upload.file_id, filename="notes.txt", content_type="text/plain",
            size_bytes=len(data),
        )  # fmt: skip
        assert message.attachments == [attachment]
        assert (await b.message(message.id)).attachments == [attachment]
        assert [m.attachments for m in await b.messages("general")] == [[attachment]]

        # Whoever reads the channel sees the file, and downloads it with its url.
        assert (await b.files.get(upload.file_id)).url == info.url
        async with httpx.AsyncClient() as raw:
            got = await raw.get(info.url, headers={"Authorization": f"Bearer {bob.token}"})
            anonymous = await raw.get(info.url)
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-type"].startswith("text/plain")
        assert anonymous.status_code == 401 and anonymous.json()["ok"] is False

        # A file attached to a DM is for its participants (and its uploader) only.
        private = await a.files.upload("secret.bin", "application/octet-stream", 3)
        assert (await put(private.upload_url, alice.token, b"\x00\x01\x02")).status_code == 200
        await a.files.complete(private.file_id)
        dm = await a.dm("bob", "for you", attachments=[private.file_id])
        assert [f["file_id"] for f in dm["attachments"]] == [private.file_id]
        [seen] = await b.dms.messages(dm["conversation_id"])
        assert [(f.file_id, f.size_bytes) for f in seen.attachments] == [(private.file_id, 3)]
        assert (await b.files.get(private.file_id)).filename == "secret.bin"
        with pytest.raises(RelayError) as hidden:
            await c.files.get(private.file_id)
        assert (hidden.value.status, hidden.value.code) == (404, "file_not_found")
        async with httpx.AsyncClient() as raw:
            peek = await raw.get(
                f"{relay.url}/v1/files/{private.file_id}/content",
                headers={"Authorization": f"Bearer {carol.token}"},
            )
        assert (peek.status_code, peek.json()["error"]["code"]) == (404, "file_not_found")
        with pytest.raises(RelayError) as reshare:
            await c.send("general", "look", attachments=[private.file_id])
        assert (reshare.value.status, reshare.value.code) == (404, "file_not_found")

        assert [f.file_id for f in await a.files.list()] == [private.file_id, upload.file_id]
        assert [f.file_id for f in await c.files.list()] == [upload.file_id]
        assert [f.file_id for f in await a.files.list(limit=1)] == [private.file_id]
        assert await b.files.list(uploaded_by="bob") == []
        assert len(await client.as_agent(relay.key).files.list()) == 2  # the workspace key
        with pytest.raises(RelayError) as unknown_uploader:
            await a.files.list(uploaded_by="nobody")
        assert (unknown_uploader.value.status, unknown_uploader.value.code) == (
            404,
            "agent_not_found",
        )

        # Only the uploader deletes; then the file is gone, from the messages too.
        with pytest.raises(RelayError) as not_owner:
            await b.files.delete(upload.file_id)
        assert (not_owner.value.status, not_owner.value.code) == (403, "not_file_owner")
        await a.files.delete(upload.file_id)
        with pytest.raises(RelayError) as deleted:
            await b.files.get(upload.file_id)
        assert (deleted.value.status, deleted.value.code) == (404, "file_not_found")
        assert (await b.message(message.id)).attachments == []
        assert not (files_dir(relay) / upload.file_id).exists()
        assert [f.file_id for f in await a.files.list()] == [private.file_id]


async def test_uploads_are_checked_and_nothing_is_half_written(relay: RunningRelay) -> None:
    async with AsyncRelay(api_key=relay.key, base_url=relay.url) as client:
        alice = await client.agents.register("alice")
        bob = await client.agents.register("bob")
        a, b = client.as_agent(alice.token), client.as_agent(bob.token)
        await a.channels.create("general")
        await b.channels.join("general")

        with pytest.raises(RelayError) as too_large:
            await a.files.upload("huge.bin", "application/octet-stream", MAX_FILE_BYTES + 1)
        assert (too_large.value.status, too_large.value.code) == (413, "file_too_large")
        with pytest.raises(RelayError) as not_a_type:
            await a.files.upload("x.txt", "text", 1)
        assert (not_a_type.value.status, not_a_type.value.code) == (400, "invalid_request")
        with pytest.raises(RelayError) as by_workspace:
            await client.as_agent(relay.key).files.upload("x.txt", "text/plain", 1)
        assert (by_workspace.value.status, by_workspace.value.code) == (
            403,
            "agent_token_required",
        )
        async with httpx.AsyncClient(
            base_url=relay.url, headers={"Authorization": f"Bearer {alice.token}"}
        ) as raw:
            extra = await raw.post(
                "/v1/files/upload",
                json={"filename": "x", "content_type": "text/plain", "size": 1, "public": True},
            )
            negative = await raw.post(
                "/v1/files/upload", json={"filename": "x", "content_type": "text/plain", "size": -1}
            )
        assert (extra.status_code, extra.json()["error"]["code"]) == (400, "invalid_request")
        assert (negative.status_code, negative.json()["error"]["code"]) == (400, "invalid_request")
        assert await a.files.list() == []

        upload = await a.files.upload("four.txt", "text/plain", 4)
        # Not complete yet: a message can't carry it, and nothing of the message is written.
        with pytest.raises(RelayError) as not_complete:
            await a.send("general", "early", attachments=[upload.file_id])
        assert (not_complete.value.status, not_complete.value.code) == (409, "file_not_complete")
        with pytest.raises(RelayError) as no_bytes:
            await a.files.complete(upload.file_id)
        assert (no_bytes.value.status, no_bytes.value.code) == (409, "upload_incomplete")
        with pytest.raises(RelayError) as unknown:
            await a.send("general", "ghost", attachments=["file_nope"])
        assert (unknown.value.status, unknown.value.code) == (404, "file_not_found")
        with pytest.raises(RelayError) as too_many:
            await a.send("general", "lots", attachments=[f"file_{i}" for i in range(11)])
        assert (too_many.value.status, too_many.value.code) == (400, "invalid_request")
        assert await b.messages("general") == []
        assert await relay.store.unacked_deliveries(bob.id) == []

        # Only the uploader sends the bytes (to anyone else a pending file does not exist),
        # exactly as many as declared.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"abc"

        by_bob = await put(upload.upload_url, bob.token, b"abcd")
        over = await put(upload.upload_url, alice.token, b"abcde")
        over_chunked = await put(upload.upload_url, alice.token, chunks())
        under = await put(upload.upload_url, alice.token, b"abc")
        unauthenticated = await put(upload.upload_url, "at_live_nope", b"abcd")
        assert (by_bob.status_code, by_bob.json()["error"]["code"]) == (404, "file_not_found")
        assert (over.status_code, over.json()["error"]["code"]) == (413, "file_too_large")
        assert (over_chunked.status_code, over_chunked.json()["error"]["code"]) == (
            413,
            "file_too_large",
        )
        assert (under.status_code, under.json()["error"]["code"]) == (400, "size_mismatch")
        assert unauthenticated.status_code == 401
        assert sorted(p.name for p in files_dir(relay).iterdir()) == []  # no partial bytes kept
        with pytest.raises(RelayError) as still_no_bytes:
            await a.files.complete(upload.file_id)
        assert (still_no_bytes.value.status, still_no_bytes.value.code) == (
            409,
            "upload_incomplete",
        )

        assert (await put(upload.upload_url, alice.token, b"abcd")).status_code == 200
        assert (await put(upload.upload_url, alice.token, b"wxyz")).status_code == 200  # retry
        info = await a.files.complete(upload.file_id)
        assert info.size == 4
        again = await put(upload.upload_url, alice.token, b"abcd")
        assert (again.status_code, again.json()["error"]["code"]) == (409, "file_already_complete")
        async with httpx.AsyncClient() as raw:
            got = await raw.get(info.url, headers={"Authorization": f"Bearer {alice.token}"})
        assert got.content == b"wxyz"

        # An upload URL expires.
        late = await a.files.upload("late.txt", "text/plain", 1)
        conn = sqlite3.connect(relay.store.path)
        with conn:
            conn.execute(
                "UPDATE files SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ?",
                (late.file_id,),
            )
        conn.close()
        expired = await put(late.upload_url, alice.token, b"x")
        assert (expired.status_code, expired.json()["error"]["code"]) == (410, "upload_expired")
