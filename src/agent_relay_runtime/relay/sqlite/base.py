"""The relay's store on SQLite: WAL mode, versioned migrations, a writer process.

Changes are made by the writer process (`writer`), the database's only writer, and
group-committed: the changes that arrive while a batch is on its way go together into
the next transactions (`MAX_BATCH` changes at most each), a change that fails rolled back
alone, and every caller returns only after the commit that holds its change. Up to
`PIPELINE` batches may be on their way at once (one committing, the next ones sent), so
the writer does not wait for this process between commits. A commit is what costs (with
fan-out, five times the work of the change itself), so this is what lets many writers
through. With WAL and ``synchronous=NORMAL`` a commit survives the process being killed
(a power loss may lose the last commits, which ``synchronous="full"`` prevents at a cost).

Reads use this process's own connection (``query_only``), in a worker thread, one call
at a time; with WAL they see every commit that was answered before they started.

Migrations are the ``migrations/NNNN_*.sql`` files of this package, applied in order
inside a transaction each (before the writer starts), the schema version kept in
``PRAGMA user_version``.

The directory (workspaces, agents and their tokens, channels and their members) is what
every request looks up, and it rarely changes: lookups of it are cached in memory
(`SqliteBase._directory_lookup`), valid while the database's directory version (moved
by triggers on those tables, migration 0006) is the one read at the last commit. A
change is seen by every request that starts after the call that made it returned: the
version is read in the committing transaction and the cache dropped before any caller
of that commit resumes.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, Generic, Self, TypeVar, overload

import anyio

from ...aio import Notifier
from ..store import NewDeliveries, StoreError
from .writer import Writer, connect, directory_version

__all__ = ["SqliteBase", "migrations", "timestamp"]

T = TypeVar("T")
U = TypeVar("U")

# Batches on their way to the writer at once: one committing, the next ones waiting, so
# the writer never waits for this process between commits (2: ~1480, 3: ~1710, 4: ~1710
# msg/s on the REST bench at C = 64; more means smaller batches, more pages a message).
PIPELINE = 3
# Changes a batch at most. Uncapped, a node bench fell into a convoy: every waiting post
# went into one batch (~110 of them, ~47 ms to commit) while the relay's loop idled, then
# the loop spent as long pushing its answer while the writer idled (busy 48% of the
# time). Capped, the writer commits the next batch while the loop handles the last:
# ~920 -> ~1070 msg/s with the node online, the same with deliveries only stored.
MAX_BATCH = 48
DIRECTORY_CACHE = 10_000  # entries; dropped whole when full (a bound, not an eviction policy)


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every migration shipped, in order."""
    found = []
    for entry in files("agent_relay_runtime.relay").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqliteBase:
    """The connections, group commit and reads that every part of the store builds on."""

    def __init__(self, conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
        self._conn = conn  # reads only (query_only): the writer process makes every change
        self.path = path
        self.synchronous = synchronous
        self._limiter = anyio.CapacityLimiter(1)
        self._writer = Writer(path, synchronous)
        # Batches not sent yet, oldest first: changes, and the event set once committed.
        self._queued: deque[tuple[list[_Change[Any]], anyio.Event]] = deque()
        self._committers = 0
        # The directory's version as of the last commit, and lookups made at that version.
        self.directory_version = directory_version(conn)
        self._directory: dict[Hashable, Any] = {}
        self._directory_at = self.directory_version
        # Told after every commit: the event log's readers wait on it.
        self.committed = Notifier()
        # Told, after the commit, of each message's deliveries and what is pushed of it.
        self.on_deliveries: list[Callable[[NewDeliveries, dict[str, Any]], None]] = []

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "normal") -> Self:
        def opened() -> sqlite3.Connection:
            conn = connect(path, synchronous)
            migrate(conn)
            conn.execute("PRAGMA query_only = ON")
            return conn

        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await anyio.to_thread.run_sync(opened)
        store = cls(conn, path, synchronous)
        await store._writer.start()
        return store

    async def aclose(self) -> None:
        await self._writer.aclose()
        await self._run(self._conn.close)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    @overload
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    @overload
    async def _write(self, fn: Callable[[sqlite3.Connection], U], then: Callable[[U], T]) -> T: ...

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        then: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run ``fn`` in a transaction (its own savepoint) in the writer process, committed
        before this returns. ``fn`` is pickled: a module-level function or a partial of
        one, taking the connection last; its result and exceptions are pickled back.

        ``then``, if given, makes the result into what this returns, in this process, as
        soon as the commit is answered and in the order the changes were committed, before
        any caller resumes: what must follow commit order (pushing a message's deliveries,
        whose seqs the writer assigned in that order) goes there."""
        if not self._queued or len(self._queued[-1][0]) >= MAX_BATCH:
            self._queued.append(([], anyio.Event()))
        changes, done = self._queued[-1]
        change: _Change[Any] = _Change(fn, done, then)
        changes.append(change)
        if self._committers < PIPELINE:
            # This caller sends batches, for itself and for whoever queues meanwhile, while
            # up to PIPELINE - 1 others wait for theirs; a change once queued is committed
            # even if its caller is cancelled.
            self._committers += 1
            try:
                with anyio.CancelScope(shield=True):
                    while self._queued:
                        await self._commit_batch()
            finally:
                self._committers -= 1
        await change.done.wait()  # sent by another caller's batch, maybe still on its way
        return change.outcome()

    async def _commit_batch(self) -> None:
        batch, done = self._queued.popleft()
        outcomes, version = await self._writer.commit([each.fn for each in batch])
        # Before any caller of the batch resumes (answers come in the order the batches
        # were sent): a directory change is seen by every request that starts after it
        # returned.
        if version is not None:
            self.directory_version = version
        for each, (result, error) in zip(batch, outcomes, strict=True):
            each.result, each.error = result, error
            if error is None and each.then is not None:
                try:
                    each.result = each.then(result)
                except Exception as exc:  # the caller gets it; the batch goes on
                    each.error = exc
        done.set()
        self.committed.notify()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda: fn(self._conn))

    async def _rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return await self._read(lambda c: c.execute(sql, args).fetchall())

    async def _directory_lookup(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """``load()``, or what it gave for ``key`` at the directory's current version.
        Only what was found is kept (not None: an unknown token fills nothing). Callers
        get the cached object itself: treat it as read-only."""
        version = self.directory_version
        if self._directory_at != version:
            self._directory.clear()
            self._directory_at = version
        found = self._directory.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        value = await load()
        # Kept only if no commit moved the version meanwhile (the read may predate it).
        if value is not None and self.directory_version == version == self._directory_at:
            if len(self._directory) >= DIRECTORY_CACHE:
                self._directory.clear()
            self._directory[key] = value
        return value


class _Change(Generic[T]):
    """A change waiting for its commit, and how it went."""

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        done: anyio.Event,
        then: Callable[[Any], T] | None,
    ) -> None:
        self.fn, self.then = fn, then
        self.done = done  # its batch's
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


_MISSING = object()


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations newer than the file's ``user_version``, each atomically."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    shipped = migrations()
    newest = shipped[-1][0] if shipped else 0
    if current > newest:
        raise StoreError(
            f"the relay database is at schema version {current}, newer than this"
            f" agent-relay-runtime knows ({newest}); upgrade it"
        )
    for version, sql in shipped:
        if version > current:
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
                )
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
