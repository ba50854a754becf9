"""Housekeeping: what the relay does of its own accord, now and then, because nobody asks.

- Presence: an agent that marked itself online (``POST /v1/agents/heartbeat``) and then
  stopped heartbeating is marked offline once its ``last_seen`` is older than
  `HousekeepingConfig.presence_timeout` (90 s: three of the SDK's 30 s heartbeats). An
  agent hosted by a node is not, while its node is connected: the node's connection is
  its heartbeat, and the node going away marks it offline (`Store.node_offline`). One
  whose node is not connected (the relay stopped under it) goes offline like any other.
  Its ``last_seen`` stays: when it was last seen.
- Uploads: a file still ``pending`` `HousekeepingConfig.upload_ttl` after it was declared
  (an hour, the upload URL's life) is abandoned: marked deleted, as ``DELETE
  /v1/files/{id}`` does, and what the files directory holds of it removed. A complete
  file is never touched.

Neither writes an event: the relay records none when presence changes (a heartbeat, a
disconnect, a node going away) or a file is deleted, and this is the same change.

`Housekeeping.sweep` does both as of a given time (tests choose it); `Housekeeping.run`
sweeps at start and then every `HousekeepingConfig.interval` seconds until cancelled. A
job that fails is logged, and the next sweep tries again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import anyio
from anyio.abc import TaskStatus

from ..aio import running
from ..logs import get_logger
from .store import Agent, FileRecord, Store

__all__ = ["MAX_INTERVAL", "Housekeeping", "HousekeepingConfig", "Swept"]

T = TypeVar("T")

MAX_INTERVAL = 30.0  # seconds between sweeps at most, whatever the limits


@dataclass(frozen=True)
class HousekeepingConfig:
    """How long the relay waits, in seconds, before it gives up on an agent or an upload."""

    presence_timeout: float = 90.0  # three of the SDK's 30 s heartbeats
    upload_ttl: float = 3600.0  # the upload URL's life (rest.files.UPLOAD_TTL)

    def __post_init__(self) -> None:
        if self.presence_timeout <= 0 or self.upload_ttl <= 0:
            raise ValueError("HousekeepingConfig: the timeouts are positive numbers of seconds")

    @property
    def interval(self) -> float:
        """Seconds between sweeps: a third of the shorter limit, so that nothing outlives
        its limit by more than a third of it, and at most `MAX_INTERVAL`."""
        return min(self.presence_timeout / 3, self.upload_ttl / 3, MAX_INTERVAL)


@dataclass
class Swept:
    """What one sweep did: the agents it marked offline, the uploads it abandoned."""

    offline: list[Agent] = field(default_factory=list)
    abandoned: list[FileRecord] = field(default_factory=list)


class Housekeeping:
    """Sweeps the store for agents whose heartbeats stopped and abandoned uploads.

    ``live_nodes`` gives the ids of the nodes connected now (`Hub.live_nodes`);
    ``drop_bytes`` removes what the files directory holds of a file (`rest.files.drop_bytes`
    over the relay's directory)."""

    def __init__(
        self,
        store: Store,
        live_nodes: Callable[[], Sequence[str]],
        drop_bytes: Callable[[str], Awaitable[None]],
        config: HousekeepingConfig | None = None,
    ) -> None:
        self.store = store
        self.live_nodes = live_nodes
        self.drop_bytes = drop_bytes
        self.config = config or HousekeepingConfig()
        self.log = get_logger(component="relay.housekeeping")

    def lifespan(self, app: object) -> AbstractAsyncContextManager[None]:
        """Run the sweeps while the app serves (a Starlette lifespan)."""
        return running(self.run)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Report started, then sweep at once and every `HousekeepingConfig.interval`
        seconds until cancelled (at once: a restart finds what went stale meanwhile)."""
        task_status.started()
        while True:
            await self.sweep(datetime.now(UTC))
            await anyio.sleep(self.config.interval)  # a period, not synchronization

    async def sweep(self, now: datetime) -> Swept:
        """Both jobs as of ``now`` (an aware datetime); what they did. A job that fails is
        logged and counts as having done nothing; the other still runs."""
        return Swept(
            offline=await self._guarded("presence", self._expire_presence(now)),
            abandoned=await self._guarded("uploads", self._abandon_uploads(now)),
        )

    async def _guarded(self, job: str, work: Awaitable[list[T]]) -> list[T]:
        try:
            return await work
        except Exception as exc:
            # The next sweep tries again: one that fails (the store busy, a disk error)
            # must not end the housekeeping for the rest of the relay's life.
            self.log.error("housekeeping_failed", job=job, error=repr(exc))
            return []

    async def _expire_presence(self, now: datetime) -> list[Agent]:
        seen_before = _iso(now - timedelta(seconds=self.config.presence_timeout))
        agents = await self.store.expire_presence(seen_before, self.live_nodes())
        for agent in agents:
            self.log.info(
                "agent_offline", agent=agent.name, agent_id=agent.id, last_seen=agent.last_seen,
                reason="heartbeats_stopped",
            )  # fmt: skip
        return agents

    async def _abandon_uploads(self, now: datetime) -> list[FileRecord]:
        declared_before = _iso(now - timedelta(seconds=self.config.upload_ttl))
        abandoned = await self.store.abandon_uploads(declared_before)
        for record in abandoned:
            try:
                await self.drop_bytes(record.id)
            except OSError as exc:
                # Deleted already (the record says so): the bytes left are only disk used.
                self.log.error("upload_bytes_not_dropped", file=record.id, error=repr(exc))
            self.log.info(
                "upload_abandoned", file=record.id, filename=record.filename,
                uploader=record.uploader_name, declared_at=record.created_at,
            )  # fmt: skip
        return abandoned


def _iso(moment: datetime) -> str:
    """As the store writes its timestamps (UTC, milliseconds, ``Z``), so they compare."""
    utc = moment.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
