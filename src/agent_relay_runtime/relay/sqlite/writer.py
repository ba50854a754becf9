"""The database's only writer, in a process of its own.

Why a process: the relay's event loop (HTTP, websockets, JSON) and its SQLite writes
share one core when they share a GIL; with the writes in a process of their own each has
a core (README, "The relay": about twice the messages a second on two cores).

The relay sends a batch of changes over a socket pair: picklable callables (module-level
functions, or `functools.partial` of them, taking the connection last). The writer runs a
batch in one transaction, each change in a savepoint of its own (one that raises is
undone alone), commits, and answers each change's result or exception and the
directory's version as committed. An answer is sent after its commit: a write the relay
was told of is durable. Batches are pipelined: the relay sends the next one while the
writer commits the last, and answers come back in the order the batches were sent.

Frames both ways are a 4-byte big-endian length and a pickle. Only the relay's own
process talks to the writer (the socket pair is inherited, never bound to a name).

The writer exits when the relay closes its end, exits or dies (the socket closes with
it), so it never outlives the relay; a writer that died is started again by the next
write, and the writes it had not answered fail saying their outcome is unknown.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sqlite3
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from ...gc_policy import tune_for_serving
from ..store import StoreError

__all__ = ["Change", "Outcome", "Writer", "commit", "connect", "directory_version", "main"]

# What a change came to: its result, or the exception it raised (the result then None).
Outcome = tuple[Any, BaseException | None]
Change = Callable[[sqlite3.Connection], Any]
Answer = tuple[list[Outcome], int | None]

_HEAD = struct.Struct("!I")
_MAIN = f"from {__name__} import main; main()"
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding agent_relay_runtime


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection set up as the relay uses it (autocommit: transactions are explicit)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: fan-out touches many index pages
    # Each change's savepoint keeps the pages it changes in a statement journal: in memory,
    # not a temp file written (and created, and unlinked) for every batch.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def directory_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT n FROM directory_version WHERE id = 1").fetchone()[0])


def commit(conn: sqlite3.Connection, batch: list[Change]) -> Answer:
    """One transaction for the batch; a change that raises is undone alone. Each change's
    outcome, and the directory's version as committed (None if nothing was).

    The batch runs first without a savepoint a change (each costs two statements and a
    copy of every page the change touches: ~7% of a message's write); if a change raises,
    the transaction is rolled back and the batch runs again with them. A change is a
    function of its arguments and the database alone, so running it again is safe."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            outcomes: list[Outcome] = [(change(conn), None) for change in batch]
        except Exception:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            outcomes = [_alone(conn, change) for change in batch]
        version = directory_version(conn)
        conn.execute("COMMIT")
        return outcomes, version
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [(None, exc)] * len(batch), None


def _alone(conn: sqlite3.Connection, change: Change) -> Outcome:
    """The change in a savepoint of its own: undone alone if it raises."""
    conn.execute("SAVEPOINT change")
    try:
        return change(conn), None
    except Exception as exc:  # the caller gets it; the others go on
        conn.execute("ROLLBACK TO change")
        return None, exc
    finally:
        conn.execute("RELEASE change")


class _Sent:
    """A batch sent, until its answer comes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.answer: Answer | None = None


class _Link:
    """One writer process and the relay's end of its socket; the batches sent to it and
    not answered yet, oldest first."""

    def __init__(self, proc: Process, stream: SocketStream) -> None:
        self.proc, self.stream = proc, stream
        self.reader = BufferedByteReceiveStream(stream)
        self.sent: deque[_Sent] = deque()
        self.closed = False

    @classmethod
    async def start(cls, path: Path, synchronous: str) -> _Link:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The writer imports this package from where the relay found it.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with theirs:
            proc = await anyio.open_process(
                [sys.executable, "-c", _MAIN, str(path), synchronous, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=None,
                stderr=None, env=env,
            )  # fmt: skip
        return cls(proc, await SocketStream.from_socket(ours))

    async def read_answer(self) -> None:
        """The next answer, for the oldest batch sent; if the writer is gone, every batch
        waiting fails (whether it was committed is unknown)."""
        try:
            head = await self.reader.receive_exactly(_HEAD.size)
            answer: Answer = pickle.loads(await self.reader.receive_exactly(*_HEAD.unpack(head)))
        except (OSError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                anyio.ClosedResourceError):  # fmt: skip
            await self.close(kill=True)
            return
        self.sent.popleft().answer = answer

    async def close(self, *, kill: bool) -> None:
        if not self.closed:
            self.closed = True
            await self.stream.aclose()  # the writer reads the end of its input and exits
            if kill:
                self._kill()
            with anyio.move_on_after(10) as waited:
                await self.proc.wait()
            if waited.cancelled_caught:
                self._kill()
                await self.proc.wait()
        error = StoreError(
            "the relay's database writer exited during a write: whether it was committed is unknown"
        )
        while self.sent:
            sent = self.sent.popleft()
            sent.answer = ([(None, error)] * sent.size, None)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # it is gone already
            self.proc.kill()


class Writer:
    """The relay's end of its writer process: `commit` sends a batch and returns its
    answer once committed. Calls may overlap (the batches are pipelined); each returns
    its own batch's answer. Call `start` first and `aclose` at the end.

    A writer that is gone is started again by the next batch: one that died between
    batches costs nothing (the batch goes to the new one); the batches it had been sent
    fail, saying whether they were committed is unknown."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path, self.synchronous = path, synchronous
        self._link: _Link | None = None
        self._send_lock = anyio.Lock()
        self._read_lock = anyio.Lock()

    @property
    def pid(self) -> int | None:
        return self._link.proc.pid if self._link is not None else None

    async def start(self) -> None:
        self._link = await _Link.start(self.path, self.synchronous)

    async def commit(self, batch: list[Change]) -> Answer:
        data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _HEAD.pack(len(data)) + data
        sent = _Sent(len(batch))
        async with self._send_lock:
            for attempt in (1, 2):
                if self._link is not None and self._link.proc.returncode is not None:
                    await self._link.close(kill=True)  # it died since the last batch
                if self._link is None or self._link.closed:
                    self._link = await _Link.start(self.path, self.synchronous)
                link = self._link
                # In the queue before it is on the wire: answers come in the order sent.
                link.sent.append(sent)
                try:
                    await link.stream.send(frame)
                    break
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    # The writer's end is closed: it did not get this batch whole.
                    link.sent.remove(sent)
                    await link.close(kill=True)
                    if attempt == 2:
                        error = StoreError("the relay's database writer cannot be started")
                        return [(None, error)] * len(batch), None
        async with self._read_lock:
            while sent.answer is None:
                await link.read_answer()
        return sent.answer

    async def aclose(self) -> None:
        """Close the writer's input and wait for it to finish (it closes its database)."""
        with anyio.CancelScope(shield=True):
            async with self._send_lock, self._read_lock:
                if self._link is not None:
                    await self._link.close(kill=False)
                    self._link = None


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def serve(path: Path, synchronous: str, sock: socket.socket) -> None:
    """The writer's loop: a batch in, its answer out, until the relay closes its end."""
    conn = connect(path, synchronous)
    try:
        while (head := _receive_exactly(sock, _HEAD.size)) is not None:
            data = _receive_exactly(sock, *_HEAD.unpack(head))
            if data is None:
                return
            batch: list[Change] = pickle.loads(data)
            answer = commit(conn, batch)
            try:
                out = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # a result that does not pickle: a bug in that change
                error = StoreError(f"committed, but a write's result could not be sent: {exc}")
                out = pickle.dumps(([(None, error)] * len(batch), answer[1]))
            sock.sendall(_HEAD.pack(len(out)) + out)
    except (BrokenPipeError, ConnectionResetError):
        return  # the relay is gone
    finally:
        conn.close()


def main() -> None:
    """The writer process: ``DATABASE SYNCHRONOUS FD`` (the socket it inherited)."""
    tune_for_serving()
    serve(Path(sys.argv[1]), sys.argv[2], socket.socket(fileno=int(sys.argv[3])))
