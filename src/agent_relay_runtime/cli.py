"""The ``agent-relay-runtime`` command line: a thin client of the daemon (and ``serve``).

Every verb takes ``--json``; every failure prints one ``error: …`` line to stderr and
exits non-zero (1 for a failed operation, 2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .exceptions import RuntimeErrorBase

__all__ = ["main"]

Verb = Callable[[argparse.Namespace], int]


def _common(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the verb. Only the top level sets defaults, so a
    verb's parser does not overwrite a value given before the verb."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=None if defaults else argparse.SUPPRESS,
        help="data dir (default $AGENT_RELAY_HOME or XDG data)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="print JSON",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(defaults=False)
    parser = argparse.ArgumentParser(
        prog="agent-relay-runtime",
        description="Host AI coding agents as managed sessions.",
        parents=[_common(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common], description=help_text)

    p = verb("serve", "run the daemon (supervisor + local control API)")
    p.add_argument(
        "--listen", help="unix:PATH or 127.0.0.1:PORT (default: a socket in the data dir)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--relay-url",
        default=os.environ.get("RELAY_BASE_URL"),
        help="join this relay (default $RELAY_BASE_URL; none: run the embedded relay)",
    )
    p.add_argument(
        "--workspace-key",
        default=os.environ.get("RELAY_WORKSPACE_KEY"),
        help="the workspace key for --relay-url (default $RELAY_WORKSPACE_KEY)",
    )
    p.add_argument(
        "--relay-port", type=int, default=0, help="the embedded relay's port (default: any)"
    )
    p.add_argument("--node-name", help="this node's name in the workspace (default: hostname)")
    p.add_argument(
        "--no-agent-actions", dest="agent_actions", action="store_false",
        help="do not offer agent.create/release/status/list/attach on the workspace",
    )  # fmt: skip
    p.add_argument(
        "--agent-actions-for", metavar="NAME,…",
        help="only these participants may invoke the agent.* actions (default: everyone)",
    )  # fmt: skip

    p = verb("relay", "run the embedded relay alone, for a team to share")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=4480)
    p.add_argument("--workspace", default="local", help="name of the workspace to create")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    verb("workspace", "the workspace the running daemon belongs to (name, key, relay_url)")

    p = verb("create", "start an agent session (pass the agent's own arguments after --)")
    p.add_argument("harness", help="claude, generic, or a profile name (see doctor)")
    p.add_argument("--name", help="session name (default HARNESS-N)")
    p.add_argument("--mode", choices=["pty", "headless"], help="default: the harness's own")
    p.add_argument("--cwd", help="working directory (default: this one)")
    p.add_argument("--model")
    p.add_argument("--task", help="first message, delivered once ready")
    p.add_argument("--command", help="executable to run instead of the harness's own")
    p.add_argument("--resume", metavar="ID", help="continue the harness's conversation ID")
    p.add_argument(
        "--endpoint",
        metavar="URL",
        help="attach to a running server: opencode serve (password from $OPENCODE_SERVER_PASSWORD) "
        "or an openclaw gateway (token from $OPENCLAW_GATEWAY_TOKEN)",
    )
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--idle-after", type=float, metavar="SECONDS", help="quiet window for idle")
    p.add_argument("--ready-timeout", type=float, metavar="SECONDS")
    p.add_argument("--no-wait", action="store_true", help="return once spawned, not ready")
    p.add_argument(
        "--isolated", action="store_true", help="give the CLI a config/state dir of its own"
    )
    p.add_argument("--keep-state", action="store_true", help="keep that dir after release")
    p.add_argument("--yolo", action="store_true", help="pass the CLI's permission-bypass flag")
    p.add_argument(
        "--approvals",
        choices=["ask", "allow", "deny"],
        help="who answers tool approvals: a person (ask, default), or always allow/deny",
    )

    p = verb("attach", "adopt a running process by pid, for observation and release")
    p.add_argument("name")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--harness", default="process")

    p = verb("ps", "list sessions")
    p.add_argument("--all", action="store_true", help="include recently ended sessions")

    p = verb("send", "send a message: @agent or #channel through the relay, NAME to a session")
    p.add_argument("name", metavar="TO", help="@agent, #channel, or a local session's name")
    p.add_argument("text")
    p.add_argument("--mode", choices=["wait", "steer", "immediate"], default="wait")
    p.add_argument("--from", dest="sender", metavar="SENDER")
    p.add_argument("--id", help="message id (deduplicates)")
    p.add_argument("--idempotency-key")
    p.add_argument("--wait", action="store_true", help="block until delivered or failed")
    p.add_argument("--timeout", type=float, default=120.0)

    p = verb("events", "print session events as JSON lines")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--session")
    p.add_argument("--since", type=int, default=0, metavar="SEQ")

    p = verb("approvals", "list a session's pending tool approvals")
    p.add_argument("name")

    p = verb("approve", "answer a pending tool approval")
    p.add_argument("name")
    p.add_argument("approval_id")
    p.add_argument("--deny", action="store_true", help="deny instead of allow")

    p = verb("keys", "type raw keys into a PTY session (escapes: \\r Enter, \\x1b Esc)")
    p.add_argument("name")
    p.add_argument("keys")

    p = verb("screen", "print a PTY session's screen")
    p.add_argument("name")

    p = verb("logs", "print a session's raw output (scrollback or stderr)")
    p.add_argument("name")
    p.add_argument("--bytes", type=int)

    p = verb("release", "stop a session and every process it started")
    p.add_argument("name")
    p.add_argument("--reason")

    verb("doctor", "which agent CLIs are installed, their versions, broken profiles")

    p = verb("mcp", "the MCP server for an agent, on stdio (acts with the agent's relay token)")
    p.add_argument("--relay-url", help="the relay (default $RELAY_BASE_URL)")
    p.add_argument(
        "--token-file", metavar="PATH", help="a file holding the agent's token ($RELAY_AGENT_TOKEN)"
    )
    return parser


def _split_agent_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after the first ``--`` goes to the agent, untouched."""
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1 :]
    return argv, []


def _data_dir(args: argparse.Namespace) -> Path:
    from .daemon.state import resolve_data_dir

    return resolve_data_dir(args.data_dir)


def _client(args: argparse.Namespace) -> Any:
    from .daemon.client import DaemonClient

    return DaemonClient(_data_dir(args))


def _out(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


def cmd_serve(args: argparse.Namespace) -> int:
    import anyio

    from .daemon.server import DaemonConfig, serve
    from .gc_policy import tune_for_serving
    from .logs import configure_logging

    configure_logging(args.log_level)
    config = DaemonConfig(
        data_dir=_data_dir(args),
        listen=args.listen,
        relay_url=args.relay_url or None,
        workspace_key=args.workspace_key or None,
        relay_port=args.relay_port,
        agent_actions=args.agent_actions,
        agent_actions_for=_names(args.agent_actions_for),
    )
    if args.node_name:
        config.node_name = args.node_name
    tune_for_serving()
    return anyio.run(serve, config)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def cmd_relay(args: argparse.Namespace) -> int:
    import anyio

    from .gc_policy import tune_for_serving
    from .logs import configure_logging
    from .relay.embedded import serve_alone

    configure_logging(args.log_level)
    tune_for_serving()
    return anyio.run(serve_alone, _data_dir(args) / "relay", args.host, args.port, args.workspace)


def cmd_workspace(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.request("GET", "/v1/workspace")
    shown = {k: data[k] for k in ("name", "key", "relay_url")}
    _out(args, shown, "\n".join(f"{k}: {v}" for k, v in shown.items()))
    return 0


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RuntimeErrorBase(f"--env: expected K=V, got {pair!r}")
        env[key] = value
    return env


def _endpoint_secret(harness: str) -> str | None:
    """The secret of a server to attach to, from the variable its own CLI reads."""
    name = "OPENCLAW_GATEWAY_TOKEN" if harness == "openclaw" else "OPENCODE_SERVER_PASSWORD"
    return os.environ.get(name)


def cmd_create(args: argparse.Namespace) -> int:
    command = args.command
    if command and os.sep in command:
        command = str(Path(command).absolute())  # the daemon's cwd is not ours
    body = {
        "harness": args.harness,
        "name": args.name,
        "mode": args.mode,
        "cwd": str(Path(args.cwd).absolute() if args.cwd else Path.cwd()),
        "model": args.model,
        "task": args.task,
        "resume": args.resume,
        "endpoint": args.endpoint,
        "password": _endpoint_secret(args.harness) if args.endpoint else None,
        "command": command,
        "args": args.agent_args,
        "env": _env_pairs(args.env),
        "idle_after": args.idle_after,
        "ready_timeout": args.ready_timeout,
        "isolated": args.isolated or None,
        "keep_state": args.keep_state or None,
        "yolo": args.yolo or None,
        "approvals": args.approvals,
        "wait": not args.no_wait,
    }
    body = {k: v for k, v in body.items() if v is not None}
    with _client(args) as client:
        info = client.request("POST", "/v1/sessions", json=body, timeout=None)
    human = (
        f"{info['name']}: {info['state']} ({info['harness']}, {info['mode']}, pid {info['pid']})"
    )
    _out(args, info, human)
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    body = {"name": args.name, "pid": args.pid, "harness": args.harness}
    with _client(args) as client:
        info = client.request("POST", "/v1/sessions/attach", json=body)
    _out(args, info, f"{info['name']}: attached to pid {info['pid']}")
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.request("GET", "/v1/sessions", params={"all": 1} if args.all else None)
    rows = data["sessions"] + data.get("ended", [])
    header = f"{'NAME':20} {'HARNESS':10} {'MODE':9} {'STATE':10} {'PID':>8} {'QUEUED':>6}"
    lines = [header] + [
        f"{s['name']:20} {s['harness']:10} {s['mode']:9} {s['state']:10} "
        f"{s['pid'] or '-':>8} {s['pending']:>6}"
        for s in rows
    ]
    _out(args, data, "\n".join(lines))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    if args.name.startswith(("@", "#")):
        return _send_through_relay(args)
    body = {
        "text": args.text,
        "mode": args.mode,
        "from": args.sender,
        "id": args.id,
        "idempotency_key": args.idempotency_key,
        "wait": args.wait,
        "timeout": args.timeout,
    }
    body = {k: v for k, v in body.items() if v is not None}
    with _client(args) as client:
        data = client.request(
            "POST", f"/v1/sessions/{args.name}/messages", json=body, timeout=args.timeout + 10
        )
    receipt = data["receipt"]
    detail = receipt.get("reason") or (receipt.get("evidence") or {}).get("detail") or ""
    _out(
        args,
        data,
        f"{receipt['status']} {receipt['message_id']}" + (f": {detail}" if detail else ""),
    )
    if receipt["status"] == "failed":
        retry = "retryable" if receipt.get("retryable") else "not retryable"
        print(f"error: delivery failed: {receipt['reason']} ({retry})", file=sys.stderr)
        return 1
    return 0


def _send_through_relay(args: argparse.Namespace) -> int:
    if args.mode == "immediate" or args.id or args.idempotency_key:
        raise RuntimeErrorBase("--mode immediate, --id and --idempotency-key are for a session")
    body = {"to": args.name, "text": args.text, "mode": args.mode, "wait": args.wait,
            "timeout": args.timeout}  # fmt: skip
    if args.sender:
        body["from"] = args.sender
    with _client(args) as client:
        data = client.request("POST", "/v1/relay/messages", json=body, timeout=args.timeout + 10)
    lines = [f"sent {data['message_id']} to {data['to']}"]
    failed = False
    for receipt in data["receipts"]:
        lines.append(f"  {receipt['agent_name']}: {receipt['status']}")
        failed = failed or receipt["status"] == "failed"
    _out(args, data, "\n".join(lines))
    return 1 if failed else 0


def cmd_events(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"since": args.since}
    if args.session:
        params["session"] = args.session
    if args.follow:
        params["follow"] = 1
    with _client(args) as client:
        for line in client.stream_lines("/v1/events", params):
            sys.stdout.buffer.write(line + b"\n")
            sys.stdout.flush()
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.request("GET", f"/v1/sessions/{args.name}/approvals")
    lines = [
        f"{a['approval_id']}  {a['tool']}  {json.dumps(a['input'])[:100]}" for a in data["pending"]
    ]
    _out(args, data, "\n".join(lines) or "no pending approvals")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    decision = "deny" if args.deny else "allow"
    with _client(args) as client:
        data = client.request(
            "POST",
            f"/v1/sessions/{args.name}/approvals/{args.approval_id}",
            json={"decision": decision},
        )
    _out(args, data, f"{decision}: {args.approval_id}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    import codecs

    keys = codecs.decode(args.keys, "unicode_escape")
    with _client(args) as client:
        data = client.request("POST", f"/v1/sessions/{args.name}/keys", json={"keys": keys})
    _out(args, data, f"sent {data['sent']} key(s) to {args.name}")
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.request("GET", f"/v1/sessions/{args.name}/screen")
    _out(args, data, data["text"])
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    params = {"bytes": args.bytes} if args.bytes else None
    with _client(args) as client:
        data = client.request("GET", f"/v1/sessions/{args.name}/logs", params=params)
    if args.json:
        print(json.dumps({"name": args.name, "logs": data.decode("utf-8", "replace")}))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    params = {"reason": args.reason} if args.reason else None
    with _client(args) as client:
        data = client.request("DELETE", f"/v1/sessions/{args.name}", params=params, timeout=None)
    info = data["exit"]
    how = (
        "gracefully" if info["graceful"] else "after " + (", ".join(info["signals_sent"]) or "exit")
    )
    swept = f", swept {len(info['swept'])} stray process(es)" if info["swept"] else ""
    left = f", SURVIVORS {info['survivors']}" if info["survivors"] else ""
    _out(args, data, f"released {args.name} {how}{swept}{left}")
    return 1 if info["survivors"] else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    report = diagnose(_data_dir(args))
    try:
        with _client(args) as client:
            report["daemon"] = client.request("GET", "/v1/health")
    except RuntimeErrorBase as exc:
        report["daemon"] = {"status": "not running", "detail": exc.message}
    lines = [f"{'HARNESS':10} {'INSTALLED':9} {'TESTED':7} VERSION"]
    for cli in report["clis"]:
        version = cli["version"] or cli["error"] or ""
        tested = {True: "yes", False: "no", None: "-"}[cli["tested"]]
        if cli["tested"] is False:
            version += f" (tested: {', '.join(cli['tested_versions'])})"
        installed = "yes" if cli["installed"] else "no"
        lines.append(f"{cli['harness']:10} {installed:9} {tested:7} {version}")
    lines.append(f"profiles: {', '.join(report['profiles'])}")
    for name, problem in report["profile_problems"].items():
        lines.append(f"profile {name} is broken: {problem}")
    daemon = report["daemon"]
    lines.append(f"daemon: {daemon.get('status')} {daemon.get('detail', '')}".rstrip())
    _out(args, report, "\n".join(lines))
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    import anyio

    from .exceptions import ConfigError
    from .logs import configure_logging
    from .mcp import McpConfig, serve

    try:
        config = McpConfig.resolve(os.environ, relay_url=args.relay_url, token_file=args.token_file)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    configure_logging("warning")  # to stderr: stdout carries the MCP protocol
    anyio.run(serve, config)
    return 0


VERBS: dict[str, Verb] = {
    "serve": cmd_serve,
    "relay": cmd_relay,
    "workspace": cmd_workspace,
    "create": cmd_create,
    "attach": cmd_attach,
    "ps": cmd_ps,
    "send": cmd_send,
    "events": cmd_events,
    "approvals": cmd_approvals,
    "approve": cmd_approve,
    "keys": cmd_keys,
    "screen": cmd_screen,
    "logs": cmd_logs,
    "release": cmd_release,
    "doctor": cmd_doctor,
    "mcp": cmd_mcp,
}


def main(argv: Sequence[str] | None = None) -> int:
    own, agent_args = _split_agent_args(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(own)
    args.agent_args = agent_args
    try:
        return VERBS[args.verb](args)
    except RuntimeErrorBase as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
