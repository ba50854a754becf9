"""The relay's store on SQLite: WAL mode, versioned migrations, one connection.

The connection lives in worker threads, one call at a time (a capacity limiter of one):
SQLite has one writer anyway, and a single connection keeps each transaction whole.
Changes are group-committed: the changes that arrive while a commit is under way go
together into the next transaction, each in a savepoint of its own (one that fails is
rolled back alone), and every caller returns only after the commit that holds its
change. A commit is what costs (with fan-out, five times the work of the change itself),
so this is what lets many writers through. With WAL and ``synchronous=NORMAL`` a commit
survives the process being killed (a power loss may lose the last commits, which
``synchronous="full"`` prevents at a cost).

Migrations are the ``migrations/NNNN_*.sql`` files of this package, applied in order
inside a transaction each, the schema version kept in ``PRAGMA user_version``.

The directory (workspaces, agents and their tokens, channels and their members) is what
every request looks up, and it rarely changes: lookups of it are cached in memory
(`SqliteBase._directory_lookup`), valid while the database's directory version (moved
by triggers on those tables, migration 0006) is the one read at the last commit. A
change is seen by every request that starts after the call that made it returned: the
version is read in the committing transaction and the cache dropped before any caller
of that commit resumes. This connection is the database's only writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import anyio

from ...aio import Notifier
from ..store import Delivery, StoreError

__all__ = ["SqliteBase", "migrations", "timestamp"]

T = TypeVar("T")

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
    """The connection, group commit and reads that every part of the store builds on."""

    def __init__(self, conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
        self._conn = conn
        self.path = path
        self.synchronous = synchronous
        self._limiter = anyio.CapacityLimiter(1)
        self._queued: list[_Change[Any]] = []
        self._committing = False
        # The directory's version as of the last commit, and lookups made at that version.
        self.directory_version = _directory_version(conn)
        self._directory: dict[Hashable, Any] = {}
        self._directory_at = self.directory_version
        # Told after every commit: the event log's readers wait on it.
        self.committed = Notifier()
        # Told, after the commit, of each message's deliveries and what is pushed of it.
        self.on_deliveries: list[Callable[[Sequence[Delivery], dict[str, Any]], None]] = []

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "normal") -> Self:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: fan-out touches many index pages
            migrate(conn)
            return conn

        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await anyio.to_thread.run_sync(connect)
        return cls(conn, path, synchronous)

    async def aclose(self) -> None:
        await self._run(self._conn.close)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a transaction (its own savepoint), committed before this returns."""
        change: _Change[T] = _Change(fn)
        self._queued.append(change)
        if self._committing:
            await change.done.wait()
        else:
            # This caller commits, for itself and for whoever queues meanwhile; a change
            # once queued is committed even if its caller is cancelled.
            self._committing = True
            try:
                with anyio.CancelScope(shield=True):
                    while self._queued:
                        batch, self._queued = self._queued, []
                        version = await self._run(partial(_commit, self._conn, batch))
                        # Before any caller of the batch resumes: a directory change is
                        # seen by every request that starts after it returned.
                        if version is not None:
                            self.directory_version = version
                        for each in batch:
                            each.done.set()
                        self.committed.notify()
            finally:
                self._committing = False
        return change.outcome()

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

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


_MISSING = object()


def _directory_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT n FROM directory_version WHERE id = 1").fetchone()[0])


def _commit(conn: sqlite3.Connection, batch: list[_Change[Any]]) -> int | None:
    """One transaction for the batch; a change that raises is undone alone. The
    directory's version as committed (None if nothing was)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for change in batch:
            conn.execute("SAVEPOINT change")
            try:
                change.result = change.fn(conn)
            except Exception as exc:  # the caller gets it; the others go on
                conn.execute("ROLLBACK TO change")
                change.error = exc
            conn.execute("RELEASE change")
        version = _directory_version(conn)
        conn.execute("COMMIT")
        return version
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for change in batch:
            change.error = change.error or exc
            change.result = None
        return None


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
