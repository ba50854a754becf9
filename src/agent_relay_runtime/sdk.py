"""`AgentRelay`: the Python face of a workspace, for apps and action handlers.

    relay = await AgentRelay.create_workspace(name="support-triage")   # embedded relay
    relay = await AgentRelay.join(workspace_key=key, base_url=url)     # another process
    await relay.messages.send(to="#ops", text="hi")
    handle = relay.register_action(name="review.submit_vote", description="…",
                                   input=VoteModel, available_to=[{"name": "engineer"}],
                                   handler=on_vote)
    relay.add_listener("action.completed", fn)
    relay.add_listener(relay.action("review.submit_vote").failed(), fn)
    handle.unregister()
    await relay.close()            # or: async with relay: …

The app posts as a participant of its own (``as_name``, a ``system`` participant). Its
actions are capabilities of a node of its own on the relay's node socket: the relay
checks the policy and the input's JSON Schema, then sends ``action.invoke`` here; the
handler's return value (or its exception) goes back as ``action.result``. Listeners
share one subscription to the workspace's event log that resumes from its cursor after
a drop, so no event is missed or seen twice.
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
from pydantic import BaseModel, ValidationError

from .aio import Notifier
from .exceptions import ConfigError, RuntimeErrorBase
from .logs import get_logger
from .node.link import LinkClosed, RelayLink
from .relay.client import RelayClient, RelayError
from .relay.embedded import WorkspaceInfo, run_embedded
from .relay.wire import ActionInvoke, ActionResult, Capability, Frame, NodeCapabilities

if TYPE_CHECKING:
    from .node.fleet import Fleet

__all__ = ["ActionCall", "ActionFailed", "ActionHandle", "AgentRelay", "Caller", "Selector"]

Listener = Callable[[dict[str, Any]], Any]


class ActionFailed(RuntimeErrorBase):
    """An invocation that ended in ``action.failed``: the handler's reason."""

    code = "action_failed"

    def __init__(self, action: str, invocation_id: str, reason: str) -> None:
        super().__init__(f"{action} failed: {reason}")
        self.action, self.invocation_id, self.reason = action, invocation_id, reason


@dataclass(frozen=True)
class Selector:
    """Which events a listener wants: types (``x.*`` a prefix), an agent, an action, and
    an optional test of the event's data."""

    types: tuple[str, ...] = ()
    agent: str | None = None
    action: str | None = None
    where: Callable[[dict[str, Any]], bool] | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        kind = str(event.get("type"))
        if self.types and not any(
            kind == t or (t.endswith("*") and kind.startswith(t[:-1])) for t in self.types
        ):
            return False
        if self.agent is not None and event.get("agent") != self.agent:
            return False
        if self.action is not None and event.get("action") != self.action:
            return False
        return self.where is None or self.where(event.get("data") or {})


@dataclass(frozen=True)
class ActionEvents:
    name: str

    def invoked(self) -> Selector:
        return Selector(("action.invoked",), action=self.name)

    def completed(self) -> Selector:
        return Selector(("action.completed",), action=self.name)

    def failed(self) -> Selector:
        return Selector(("action.failed",), action=self.name)

    def denied(self) -> Selector:
        return Selector(("action.denied",), action=self.name)


@dataclass(frozen=True)
class AgentEvents:
    name: str

    def idle(self) -> Selector:
        return Selector(
            ("status.changed",), agent=self.name, where=lambda d: d.get("state") == "idle"
        )

    def status(self) -> Selector:
        return Selector(("status.changed",), agent=self.name)

    def tool_called(self) -> Selector:
        return Selector(("tool.called",), agent=self.name)

    def file_changed(self) -> Selector:
        return Selector(("file.changed",), agent=self.name)

    def busy(self) -> Selector:
        return Selector(
            ("status.changed",), agent=self.name, where=lambda d: d.get("state") == "busy"
        )

    def transcript(self) -> Selector:
        return Selector(("transcript.chunk",), agent=self.name)

    def output(self) -> Selector:
        """What the agent shows: its transcript, and commands it runs with their output."""
        return Selector(("transcript.chunk", "command.*"), agent=self.name)

    def tool_completed(self) -> Selector:
        return Selector(("tool.completed", "tool.failed"), agent=self.name)

    def delivered(self) -> Selector:
        """A message went into the agent (observed evidence that it took it)."""
        return Selector(("delivery.delivered",), agent=self.name)

    def exited(self) -> Selector:
        return Selector(("session.exited", "session.failed"), agent=self.name)


@dataclass(frozen=True)
class Caller:
    """Who invoked an action (None fields: the workspace key itself)."""

    id: str | None
    name: str | None

    @property
    def handle(self) -> str | None:
        return self.name


@dataclass(frozen=True)
class ActionCall:
    """What a handler gets: the validated input, the caller, the invocation id."""

    input: Any
    agent: Caller
    invocation_id: str
    action: str


@dataclass
class _Action:
    name: str
    description: str
    model: type[BaseModel] | None
    available_to: list[dict[str, Any]] | None
    handler: Callable[[ActionCall], Any]
    when_offline: str
    timeout: float | None

    def capability(self) -> Capability:
        schema = self.model.model_json_schema() if self.model is not None else {}
        metadata: dict[str, Any] = {
            "description": self.description, "input_schema": schema,
            "when_offline": self.when_offline,
        }  # fmt: skip
        if self.available_to is not None:
            metadata["available_to"] = self.available_to
        if self.timeout is not None:
            metadata["timeout_s"] = self.timeout
        return Capability(name=self.name, kind="action", metadata=metadata)


@dataclass
class ActionHandle:
    name: str
    _relay: AgentRelay = field(repr=False)

    def unregister(self) -> None:
        """Stop handling the action (the relay forgets it once told)."""
        self._relay._unregister(self.name)


class Messages:
    def __init__(self, relay: AgentRelay) -> None:
        self._relay = relay

    async def send(self, *, to: str, text: str, mode: str = "wait") -> dict[str, Any]:
        """To ``#channel`` or ``@agent`` (a DM; a bare name means the agent too)."""
        me = await self._relay._me()
        return await me.send(to if to.startswith(("#", "@")) else f"@{to}", text, mode=mode)

    async def reply(self, message_id: str, *, text: str, mode: str = "wait") -> dict[str, Any]:
        return await (await self._relay._me()).reply(message_id, text, mode=mode)


class AgentRelay:
    """A connection to one workspace. Create with `create_workspace` or `join`."""

    def __init__(
        self, info: WorkspaceInfo, *, as_name: str | None = None, data_dir: Path | None = None
    ) -> None:
        self.workspace = info
        self.client = RelayClient(info.relay_url, info.key)
        self.messages = Messages(self)
        self.as_name = as_name or f"app-{secrets.token_hex(3)}"
        self._agent: RelayClient | None = None
        self._actions: dict[str, _Action] = {}
        self._listeners: list[tuple[Selector, Listener]] = []
        self._wanted, self._sent, self._known = 0, 0, 0
        self._known_changed = Notifier()
        self._stack = contextlib.AsyncExitStack()
        self._tg: anyio.abc.TaskGroup | None = None
        self._link: RelayLink | None = None
        self.cursor = 0
        self._listening = False
        self._data_dir = data_dir
        self._fleet: Fleet | None = None
        self._fleet_lock = anyio.Lock()
        self.log = get_logger(workspace=info.name)

    # -- opening and closing --------------------------------------------------------------

    @classmethod
    async def create_workspace(
        cls,
        name: str,
        *,
        base_url: str | None = None,
        data_dir: str | Path | None = None,
        port: int = 0,
    ) -> AgentRelay:
        """A workspace on an embedded relay in this process (its store in ``data_dir``,
        by default the runtime's data dir). Serving until `close`."""
        if base_url is not None:
            raise ConfigError(
                "a workspace on a remote relay is created where the relay runs"
                " (`agent-relay-runtime relay --workspace NAME`); then AgentRelay.join"
            )
        from .daemon.state import resolve_data_dir

        root = Path(data_dir) if data_dir is not None else resolve_data_dir() / "workspaces"
        stack = contextlib.AsyncExitStack()
        embedded = await stack.enter_async_context(
            run_embedded(root / name, port=port, workspace=name)
        )
        relay = cls(embedded.workspace, data_dir=root / name)
        relay._stack = stack
        await relay._start()
        return relay

    @classmethod
    async def join(
        cls, *, workspace_key: str, base_url: str, as_name: str | None = None
    ) -> AgentRelay:
        """The workspace whose key this is, on the relay at ``base_url``."""
        client = RelayClient(base_url, workspace_key)
        try:
            workspace = await client.workspace()
        finally:
            await client.aclose()
        relay = cls(WorkspaceInfo(str(workspace["name"]), workspace_key, base_url), as_name=as_name)
        await relay._start()
        return relay

    async def _start(self) -> None:
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._tg = tg
        self._stack.push_async_callback(self.client.aclose)
        self.cursor = (await self.client.events_page(0, types=["-"]))[1]

    async def close(self) -> None:
        if self._fleet is not None:  # its agents leave while the node is still joined
            with anyio.CancelScope(shield=True):
                await self._fleet.supervisor.shutdown("the app closed its relay")
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        if self._agent is not None:
            await self._agent.aclose()
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _me(self) -> RelayClient:
        if self._agent is None:
            created = await self.client.register(self.as_name, kind="system")
            self._agent = self.client.as_agent(str(created["token"]))
        return self._agent

    # -- actions --------------------------------------------------------------------------

    def action(self, name: str) -> ActionEvents:
        return ActionEvents(name)

    def agent(self, name: str) -> AgentEvents:
        return AgentEvents(name)

    def register_action(
        self,
        *,
        name: str,
        handler: Callable[[ActionCall], Any],
        description: str = "",
        input: type[BaseModel] | None = None,
        available_to: list[dict[str, Any]] | None = None,
        when_offline: str = "fail",
        timeout: float | None = None,
    ) -> ActionHandle:
        """Handle ``name`` in this process. ``available_to`` (selectors such as
        ``{"name": "engineer"}``) is enforced by the relay; None lets everyone invoke.
        Registration completes in the background: await `actions_ready` to know."""
        if when_offline not in ("fail", "queue"):
            raise ConfigError("when_offline: 'fail' or 'queue'")
        self._actions[name] = _Action(
            name, description, input, available_to, handler, when_offline, timeout
        )
        self._publish_actions()
        return ActionHandle(name, self)

    def _unregister(self, name: str) -> None:
        if self._actions.pop(name, None) is not None:
            self._publish_actions()

    def _publish_actions(self) -> None:
        assert self._tg is not None, "AgentRelay not started"
        self._wanted += 1
        if self._link is None:
            self._link = RelayLink(
                self.workspace.relay_url, self.workspace.key,
                f"{self.as_name}-actions", handler=self._on_frame,
                capabilities=self._capabilities, on_connected=self._registered_all,
            )  # fmt: skip
            self._tg.start_soon(self._link.run)
        else:
            self._tg.start_soon(self._update_capabilities)

    def _capabilities(self) -> list[Capability]:
        self._sent = self._wanted  # node.register carries this generation of the set
        return [a.capability() for a in self._actions.values()]

    async def _registered_all(self) -> None:
        self._known = max(self._known, self._sent)
        self._known_changed.notify()

    async def _update_capabilities(self) -> None:
        link = self._link
        assert link is not None
        await link.connected.wait()
        generation = self._wanted
        capabilities = [a.capability() for a in self._actions.values()]
        with contextlib.suppress(LinkClosed):
            await link.request(NodeCapabilities(capabilities=capabilities))
            self._known = max(self._known, generation)
            self._known_changed.notify()

    async def actions_ready(self, timeout: float = 30.0) -> None:
        """Wait until the relay knows the current set of this app's actions."""
        with anyio.fail_after(timeout):
            while self._known < self._wanted:
                await self._known_changed.waiter().wait()

    async def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, ActionInvoke):
            assert self._tg is not None
            self._tg.start_soon(self._handle, frame)

    async def _handle(self, frame: ActionInvoke) -> None:
        action = self._actions.get(frame.action)
        link = self._link
        assert link is not None
        if action is None:
            result = ActionResult(
                invocation_id=frame.invocation_id, error=f"no handler for {frame.action}"
            )
        else:
            try:
                given = action.model.model_validate(frame.input) if action.model else frame.input
                call = ActionCall(
                    given,
                    Caller(frame.agent_id, frame.agent_name),
                    frame.invocation_id,
                    frame.action,
                )
                output = action.handler(call)
                if inspect.isawaitable(output):
                    output = await output
                if isinstance(output, BaseModel):
                    output = output.model_dump(mode="json")
                result = ActionResult(invocation_id=frame.invocation_id, output=output)
            except (Exception, ValidationError) as exc:  # the handler's failure is the result
                # The runtime's own errors are one-line reasons already ("name in use: …").
                reason = str(exc) if isinstance(exc, RuntimeErrorBase) else None
                result = ActionResult(
                    invocation_id=frame.invocation_id,
                    error=reason or f"{type(exc).__name__}: {exc}",
                )
        with contextlib.suppress(LinkClosed):
            await link.send(result)

    # -- listeners ------------------------------------------------------------------------

    def add_listener(self, selector: str | Selector, fn: Listener) -> Callable[[], None]:
        """Call ``fn(event)`` for every event from now on that ``selector`` (an event type,
        ``x.*``, or a `Selector`) matches; returns a function that removes it."""
        chosen = Selector((selector,)) if isinstance(selector, str) else selector
        entry = (chosen, fn)
        self._listeners.append(entry)
        if not self._listening:  # one subscription, from the cursor taken when opened
            assert self._tg is not None, "AgentRelay not started"
            self._listening = True
            self._tg.start_soon(self._listen)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    async def _listen(self) -> None:
        while True:
            try:
                async for event in self.client.follow(self.cursor):
                    self.cursor = int(event["seq"])
                    for selector, fn in list(self._listeners):
                        if selector.matches(event):
                            await self._call(fn, event)
            except RelayError as exc:
                self.log.warning("listener_stream_refused", reason=str(exc))
            except Exception as exc:  # a dropped stream: resume from the cursor
                self.log.info("listener_stream_dropped", reason=str(exc) or type(exc).__name__)
            await anyio.sleep(1.0)  # backoff before resuming, not synchronization

    async def _call(self, fn: Listener, event: dict[str, Any]) -> None:
        try:
            result = fn(event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            self.log.warning("listener_failed", error=str(exc), event_type=event.get("type"))

    # -- invoking -------------------------------------------------------------------------

    async def invoke(self, action: str, input: Any = None) -> dict[str, Any]:
        """Invoke as this app's participant; ``{invocation_id, status}`` at once."""
        data = input.model_dump(mode="json") if isinstance(input, BaseModel) else input
        return await (await self._me()).invoke(action, data)

    async def call(self, action: str, input: Any = None, *, timeout: float = 300.0) -> Any:
        """Invoke and wait for the result: the handler's output, or `ActionFailed` with
        its reason. Follows the event log (no polling)."""
        me = await self._me()
        with anyio.fail_after(timeout):
            cursor = (await me.events_page(0, types=["-"]))[1]
            started = await self.invoke(action, input)
            wanted = started["invocation_id"]
            record: dict[str, Any] = {"status": started["status"], "error": started.get("error")}
            while record["status"] not in ("completed", "failed"):
                async for event in me.follow(cursor, types=["action.*"], action=action):
                    cursor = int(event["seq"])
                    if event["data"].get("id") == wanted:
                        record = event["data"]
                        break
        if record["status"] == "failed":
            raise ActionFailed(action, wanted, str(record.get("error")))
        return record.get("output")

    # -- hosting agents in this process ------------------------------------------------------

    async def fleet(self) -> Fleet:
        """This process's own runtime node on the workspace, started on first use: agents
        it creates are this process's children, and are released by `close`."""
        async with self._fleet_lock:
            if self._fleet is None:
                assert self._tg is not None, "AgentRelay not started"
                self._fleet = await self._tg.start(self._run_fleet)
            return self._fleet

    async def _run_fleet(self, *, task_status: anyio.abc.TaskStatus[Fleet]) -> None:
        """The fleet's supervisor and node, in a task of their own (whichever task asks
        first, an action handler say, may end long before them)."""
        from .daemon.state import resolve_data_dir
        from .node.fleet import Fleet
        from .node.hosting import RelayHost
        from .supervisor import Supervisor

        root = (self._data_dir or resolve_data_dir() / "apps" / self.as_name) / "runtime"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = self.workspace
        async with Supervisor(data_dir=root) as supervisor, anyio.create_task_group() as tg:
            host = RelayHost(supervisor, info.relay_url, info.key, f"{self.as_name}-runtime")
            await tg.start(host.run)
            fleet = Fleet(supervisor, host, info.relay_url, info.key, root)
            try:
                task_status.started(fleet)
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await fleet.aclose()
