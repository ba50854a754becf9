"""``/v1/node/ws``, relay side: one `NodeLink` per connected node.

The node authenticates with the workspace key or a node token (``nt_…`` from
``POST /v1/nodes``, which registers as that node only), sent as ``?token=`` (as relaycast
clients send it) or a bearer header, and must open with ``node.register``; the reply lists
``accepted_capabilities``. Then: ``agent.register`` binds an agent to this node (a fresh
token for it, its acknowledged seq) and starts its pump, unless the connection hosts as
many agents as the node may (`capacity`): then an ``error`` ``node_capacity_exceeded``,
the code ``POST /v1/nodes/{name}/agents`` refuses a full node with (an agent it hosts
already is not a new one, and ``agent.deregister`` makes room); ``delivery.receipt`` and
``delivery.ack`` record what the runtime did with a delivery; ``action.result`` ends an
invocation; ``agent.events`` adds session events to the workspace's log.

An agent's direct node (its token from ``POST /v1/agent/node-token``: the relaycast SDK's
``WsClient`` with an agent token) hosts that agent from its ``node.register`` on, without
an ``agent.register``, and only it (``max_agents`` 1: another agent is
``node_capacity_exceeded``); its acks are any node's. When a newer connection of a direct
node registers, the older one is closed (code 4009): the agent's deliveries go to one. A frame that
cannot be accepted is answered with an ``error`` frame naming the problem and the
connection carries on. A node silent for `DEAD_AFTER` seconds is dropped (relaycast
nodes heartbeat every 15–30 s); the relay pings every `PING_EVERY` s.

One task reads the socket and another handles the frames it read, in order. So a node
that goes away is out of the hub at once, even while one of its frames is being handled
(an invocation made after its socket closed finds no handler), and acks are stored in
batches: a node acks each ``deliver`` frame, and a commit per ack would cap a node at
about a thousand a second. The acks waiting in a row when one is handled go into the
same commit, each judged as if alone; frames stay in order, so an answer to a frame means
the acks before it are stored.
"""

from __future__ import annotations

import contextlib
import json

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..aio import put, take
from ..logs import get_logger
from .actions import ActionService
from .http_protocol import text_writer
from .hub import Hub, Pump
from .rest.kit import Api, ApiError
from .rest.nodes import node_token_owner
from .store import AckOutOfRange, Agent, Node, NodeEntry, StoreError, Workspace, delivery_id
from .wire import (
    ActionResult,
    AgentDeregister,
    AgentEvents,
    AgentRegister,
    DeliveryAck,
    DeliveryReceipt,
    Error,
    Frame,
    InventorySync,
    NodeCapabilities,
    NodeDeregister,
    NodeHeartbeat,
    NodeRegister,
    Ping,
    Pong,
    Reply,
    WireError,
    decode,
    encode,
)

__all__ = ["DEAD_AFTER", "NodeLink", "capacity", "node_route"]

DEAD_AFTER = 48.0
PING_EVERY = 20.0
REGISTER_WITHIN = 10.0
READ_AHEAD = 1024  # frames read and not handled yet; then the reader waits (backpressure)


def node_route(api: Api, hub: Hub, actions: ActionService) -> WebSocketRoute:
    async def endpoint(websocket: WebSocket) -> None:
        scheme, _, bearer = websocket.headers.get("authorization", "").partition(" ")
        token = websocket.query_params.get("token") or (
            bearer if scheme.lower() == "bearer" else None
        )
        own: NodeEntry | None = None  # with a node token: the node it was given for
        if token and token.startswith("nt_"):
            owner = await node_token_owner(api.store, token)
            if owner is None:
                await websocket.close(code=1008)  # before accept: the handshake gets a 403
                return
            workspace, own = owner
        else:
            try:
                caller = await api.caller_of(token)
            except ApiError:
                await websocket.close(code=1008)
                return
            if caller.agent is not None:
                await websocket.close(code=1008)
                return
            workspace = caller.workspace
        await websocket.accept()
        await NodeLink(websocket, workspace, api, hub, actions, own=own).run()

    return WebSocketRoute("/v1/node/ws", endpoint)


def _peek_ack(raw: str) -> DeliveryAck | None:
    """The frame if it is a well-formed ``delivery.ack`` (anything else: None)."""
    try:
        frame = decode(raw)
    except WireError:
        return None
    return frame if isinstance(frame, DeliveryAck) else None


def refusal(exc: Exception) -> str:
    """The ``error`` frame's code for what the store or the API refused."""
    code = "ack_out_of_range" if isinstance(exc, AckOutOfRange) else "refused"
    return str(getattr(exc, "code", code))


def capacity(declared: int | None, enrolled: int) -> int:
    """How many agents a node may host at once over its socket (0: no limit): what it
    declared in ``node.register``, within what it was enrolled with over REST. Each is no
    limit if 0 or missing: the relaycast SDK's nodes declare 0 unless told, which must not
    lift the limit an operator enrolled the node with."""
    limits = [limit for limit in (declared or 0, enrolled) if limit > 0]
    return min(limits, default=0)


def _not_own(own: NodeEntry, name: str, node_id: str | None) -> tuple[str, str] | None:
    """Why a socket with ``own``'s token may not register as ``name`` / ``node_id``."""
    if name != own.name:
        return "node_name_mismatch", f"this node token is node {own.name!r}'s, not {name!r}'s"
    if node_id is not None and node_id != own.id:
        return "node_id_mismatch", f"this node token is node {own.id!r}'s, not {node_id!r}'s"
    return None


class NodeLink:
    """One node's connection: reads its frames, writes the relay's."""

    def __init__(
        self,
        websocket: WebSocket,
        workspace: Workspace,
        api: Api,
        hub: Hub,
        actions: ActionService,
        *,
        own: NodeEntry | None = None,
    ) -> None:
        self.ws, self.workspace, self.store = websocket, workspace, api.store
        self.own = own  # connected with this node's token: it registers as itself only
        self.hub, self.actions = hub, actions
        self.node_id = ""
        self.node: Node | None = None
        self.max_agents = 0  # set by node.register (`capacity`); 0: no limit
        self.agents: dict[str, tuple[Agent, Pump]] = {}
        self.log = get_logger(component="relay.node", workspace=workspace.name)
        self._out, self._outq = anyio.create_memory_object_stream[str](1024)
        self._last: bool | None = None  # once out of the hub: whether it was the node's last
        self._heard = anyio.current_time()  # when the node's last frame came
        self.task_group: anyio.abc.TaskGroup

    async def send(self, frame: Frame) -> None:
        await put(self._out, encode(frame))

    async def send_text(self, text: str) -> None:
        await put(self._out, text)

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.task_group = tg
                tg.start_soon(self._write)
                try:
                    if await self._register():
                        tg.start_soon(self._ping)
                        tg.start_soon(self._close_when_silent)
                        read, unread = anyio.create_memory_object_stream[str](READ_AHEAD)
                        tg.start_soon(self._handle_all, unread, tg.cancel_scope)
                        await self._read(read)
                finally:
                    self._unhook()  # at once: the handler of a frame may still be running
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._gone()

    async def _receive(self) -> str | None:
        """The next frame's text; None once the socket is closed."""
        try:
            message = await self.ws.receive()
        except WebSocketDisconnect:
            return None
        if message["type"] == "websocket.disconnect":
            return None
        self._heard = anyio.current_time()
        text = message.get("text")
        return text if text is not None else (message.get("bytes") or b"").decode()

    async def _close_when_silent(self) -> None:
        """Close the connection once the node has sent nothing for `DEAD_AFTER` seconds.
        One timer a period, moved on by the frames that came meanwhile (not a timeout
        around every read: that cost ~8% of the relay's event loop on the node bench)."""
        while (left := self._heard + DEAD_AFTER - anyio.current_time()) > 0:
            await anyio.sleep(left)  # a deadline, not synchronization
        await self.close(4008, f"no frame for {DEAD_AFTER:g} s")

    async def _register(self) -> bool:
        raw = None
        with anyio.move_on_after(REGISTER_WITHIN) as waited:
            raw = await self._receive()
        if waited.cancelled_caught:
            await self.close(4008, f"no frame for {REGISTER_WITHIN:g} s")
        if raw is None:
            return False
        try:
            frame = decode(raw)
        except WireError as exc:
            await self._refuse(raw, exc.code, exc.message)
            return False
        if not isinstance(frame, NodeRegister):
            await self.send(
                Error(id=frame.id, code="not_registered", message="send node.register first")
            )
            return False
        refused = _not_own(self.own, frame.name, frame.node_id) if self.own else None
        if refused is not None:
            await self.send(Error(id=frame.id, code=refused[0], message=refused[1]))
            return False
        capabilities = [c.model_dump(exclude_none=True) for c in frame.capabilities]
        self.node = await self.store.node_online(
            self.workspace.id, frame.name, capabilities=capabilities, version=frame.version
        )
        self.node_id = self.node.id
        enrolled = await self.store.node_entry_by_id(self.node.id)
        self.max_agents = capacity(frame.max_agents, enrolled.max_agents if enrolled else 0)
        before = self.hub.node_link(self.node.id)
        self.hub.node_connected(self)
        direct = enrolled is not None and enrolled.direct_agent_id is not None
        pump = await self._host_direct() if direct else None
        accepted = await self.actions.handler_online(self.workspace.id, self, frame.capabilities)
        data = {"node_id": self.node.id, "name": self.node.name, "accepted_capabilities": accepted}
        await self.send(Reply(id=frame.id, data=data))
        if pump is not None:
            self.task_group.start_soon(pump.run)
        if direct and isinstance(before, NodeLink) and before is not self:
            # One agent, one socket: the connection this one replaces gets nothing more
            # (its pump stopped when this one's started), so it is told to go rather
            # than left open and silent. A reconnecting SDK meets a dead one here.
            await before.close(4009, "superseded by a newer connection of this direct node")
        self.log.info("node_registered", node=self.node.name, direct=direct)
        return True

    async def _host_direct(self) -> Pump:
        """An agent's direct node (``POST /v1/agent/node-token``) registers without an
        ``agent.register``: its agent is hosted from the start, as if it had sent one.
        The pump is returned to start once the node has its reply."""
        assert self.node is not None
        agent_id, acked = await self.store.host_direct_agent(self.node.id)
        agent = await self.store.agent_by_id(agent_id)
        assert agent is not None
        pump = Pump(self.store, agent, self, acked)
        self.hub.attach(pump)
        self.agents[agent.name] = (agent, pump)
        return pump

    async def _read(self, read: MemoryObjectSendStream[str]) -> None:
        """Read frames for `_handle_all` until the socket closes or goes silent."""
        with read:
            while (raw := await self._receive()) is not None:
                await put(read, raw)

    async def _handle_all(
        self, unread: MemoryObjectReceiveStream[str], done: anyio.CancelScope
    ) -> None:
        """Handle the frames read, in order; a run of acks in one commit. Ends the
        connection after a ``node.deregister``."""
        held: str | None = None
        with unread:
            while True:
                try:
                    raw = held if held is not None else await take(unread)
                except anyio.EndOfStream:
                    return
                held = None
                frame = await self._decoded(raw)
                if isinstance(frame, DeliveryAck):
                    acks = [frame]
                    while True:  # the acks read already, up to the first other frame
                        try:
                            held = unread.receive_nowait()
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                        more = _peek_ack(held)
                        if more is None:
                            break
                        acks.append(more)
                        held = None
                    await self._store_acks(acks)
                elif frame is not None and await self._answer(frame) is False:
                    done.cancel()
                    return

    async def _decoded(self, raw: str) -> Frame | None:
        try:
            return decode(raw)
        except WireError as exc:
            await self._refuse(raw, exc.code, exc.message)
            return None

    async def _answer(self, frame: Frame) -> bool | None:
        try:
            return await self._handle(frame)
        except (StoreError, ApiError) as exc:
            await self.send(Error(id=frame.id, code=refusal(exc), message=str(exc)))
            return None

    async def _store_acks(self, acks: list[DeliveryAck]) -> None:
        """Acks in one commit, each answered (an ``error`` if refused) as if alone."""
        results: list[int | Exception | None] = []
        wanted: list[tuple[str, int]] = []
        for ack in acks:
            try:
                wanted.append((self._hosted(ack.agent).id, ack.up_to_seq))
                results.append(None)  # to be stored
            except ApiError as exc:
                results.append(exc)
        try:
            stored: list[int | StoreError] = await self.store.ack_many(wanted) if wanted else []
        except StoreError as exc:
            stored = [exc] * len(wanted)
        answers = iter(stored)
        for ack, result in zip(acks, results, strict=True):
            outcome = next(answers) if result is None else result
            if isinstance(outcome, Exception):
                await self.send(Error(id=ack.id, code=refusal(outcome), message=str(outcome)))
            elif ack.id is not None:
                await self.send(Reply(id=ack.id, data={}))

    async def _handle(self, frame: Frame) -> bool | None:
        """Act on one frame; False ends the connection."""
        match frame:
            case AgentRegister():
                await self._agent_register(frame)
            case AgentDeregister():
                self._hosted(frame.name or "", frame.agent_id)
                await self._drop_agent(frame.name or "", frame.agent_id, forget=frame.forget)
                await self._ok(frame)
            case DeliveryReceipt():
                agent = self._hosted(frame.agent)
                await self.store.set_receipt(
                    delivery_id(agent.id, frame.seq), frame.status, reason=frame.reason,
                    retryable=frame.retryable, available_at=frame.available_at,
                    evidence=frame.evidence,
                )  # fmt: skip
                await self._ok(frame)
            case AgentEvents():
                self._hosted(frame.agent)
                await self.store.append_events(
                    self.workspace.id, frame.agent, [e.model_dump() for e in frame.events]
                )
                await self._ok(frame)
            case ActionResult():
                error = frame.error if "error" in frame.model_fields_set else None
                await self.actions.result(self, frame.invocation_id, frame.output, error)
                await self._ok(frame)
            case NodeCapabilities():
                accepted = await self.actions.handler_online(
                    self.workspace.id, self, frame.capabilities
                )
                await self.send(Reply(id=frame.id, data={"accepted_capabilities": accepted}))
            case InventorySync():
                listed = {a.name for a in frame.agents}
                for name in [n for n in self.agents if n not in listed]:
                    await self._drop_agent(name, None)
                await self._ok(frame)
            case NodeHeartbeat():
                await self._ok(frame)
            case Ping():
                await self.send(Pong(id=frame.id))
            case NodeDeregister():
                await self._ok(frame)
                return False
            case Pong() | Reply() | Error():
                pass
            case _:
                await self.send(
                    Error(
                        id=frame.id, code="unsupported", message=f"{frame.type} is not served here"
                    )
                )
        return None

    async def _agent_register(self, frame: AgentRegister) -> None:
        assert self.node is not None
        # Counted on this connection: one that took over from a dead one (a reconnect)
        # starts from nothing and registers its agents again. Frames are handled one at a
        # time, so two registrations cannot both take the last place.
        if frame.name not in self.agents and 0 < self.max_agents <= len(self.agents):
            raise ApiError(
                409,
                "node_capacity_exceeded",
                f"node {self.node.name!r} hosts {len(self.agents)} agent(s), its max_agents is"
                f" {self.max_agents}: {frame.name!r} is not registered",
            )
        agent, token, acked = await self.store.bind_agent(
            self.workspace.id, frame.name, self.node.id
        )
        old = self.agents.pop(agent.name, None)
        if old is not None:
            self.hub.detach(old[1])
        pump = Pump(self.store, agent, self, acked)
        self.hub.attach(pump)
        self.agents[agent.name] = (agent, pump)
        data = {"agent_id": agent.id, "token": token, "name": agent.name, "delivery_ack_seq": acked}
        await self.send(Reply(id=frame.id, data=data))
        self.task_group.start_soon(pump.run)

    def _hosted(self, name: str, agent_id: str | None = None) -> Agent:
        for agent, _ in self.agents.values():
            if agent.name == name or agent.id == agent_id:
                return agent
        raise ApiError(404, "agent_not_hosted", f"this node does not host an agent named {name!r}")

    async def _drop_agent(self, name: str, agent_id: str | None, *, forget: bool = False) -> None:
        agent = self._hosted(name, agent_id)
        _, pump = self.agents.pop(agent.name)
        self.hub.detach(pump)
        await self.store.unbind_agent(agent.id, forget=forget)

    async def _ok(self, frame: Frame) -> None:
        if frame.id is not None:
            await self.send(Reply(id=frame.id, data={}))

    async def _refuse(self, raw: str, code: str, message: str) -> None:
        request_id = None
        with contextlib.suppress(ValueError, AttributeError):
            request_id = json.loads(raw).get("id")
        await self.send(
            Error(
                id=request_id if isinstance(request_id, str) else None, code=code, message=message
            )
        )

    async def _write(self) -> None:
        write_texts = text_writer(self.ws.scope)  # the relay's own server offers it
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            async for text in self._outq:
                # With what else is queued now: one write (the transport also joins the
                # writes of one loop step, http_protocol).
                texts = [text]
                while True:
                    try:
                        texts.append(self._outq.receive_nowait())
                    except anyio.WouldBlock:
                        break
                if write_texts is not None and write_texts(texts):
                    continue
                for text in texts:  # the ASGI way: waits for the transport, or fails
                    await self.ws.send_text(text)

    async def _ping(self) -> None:
        while True:
            await anyio.sleep(PING_EVERY)  # a heartbeat period, not synchronization
            await self.send(Ping())

    async def close(self, code: int, reason: str) -> None:
        """Close the socket (its reader then ends the connection)."""
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    def _unhook(self) -> None:
        """Out of the hub as soon as the connection is known gone, before any await: a
        request handled meanwhile (an invocation of an action it handled) finds no
        handler rather than one that is going, and the hub takes nothing more for it."""
        for _, pump in self.agents.values():
            self.hub.detach(pump)
        last = self.hub.node_gone(self)
        self._last = last if self._last is None else self._last

    async def _gone(self) -> None:
        self._unhook()  # again: what a frame's handler added since (the hub refuses it)
        await self.actions.handler_gone(self)
        if self.node is not None and self._last:
            await self.store.node_offline(self.node.id)
            self.log.info("node_gone", node=self.node.name)
