"""The real agent CLIs, offline against the scripted model server on 127.0.0.1.

The CLIs come from `.ci/install-clis` (`.agent-clis/node_modules/.bin`) or from the
directory in `$AGENT_RELAY_CLI_BIN`; a harness whose CLI is missing is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures"))

from model_server import ScriptedModelServer  # noqa: E402

CLI_BIN = Path(os.environ.get("AGENT_RELAY_CLI_BIN") or ROOT / ".agent-clis/node_modules/.bin")
API_KEY = "sk-test-0123456789abcdefghijklmnop"


OPENCLAW_BIN = Path(
    os.environ.get("AGENT_RELAY_OPENCLAW_BIN") or ROOT / ".agent-clis/openclaw/node_modules/.bin"
)


def cli_path(name: str) -> str:
    # OpenClaw needs a newer Node than the others: it has an install of its own.
    where, installer = (OPENCLAW_BIN, "openclaw") if name == "openclaw" else (CLI_BIN, "clis")
    path = where / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in {where} (run .ci/install-{installer})")
    return str(path)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


def claude_env(url: str) -> dict[str, str]:
    """What a user sets to point Claude Code at another endpoint, plus no phoning home."""
    return {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def codex_args(url: str) -> list[str]:
    """How a user points Codex at another endpoint: `-c` overrides, passed through."""
    provider = (
        f'model_providers.scripted={{name="scripted",base_url="{url}/v1",'
        'env_key="SCRIPTED_API_KEY",wire_api="responses"}'
    )
    overrides = [
        'model_provider="scripted"',
        provider,
        'model="gpt-5.5"',
        "analytics.enabled=false",
        "features.plugins=false",
    ]
    return [arg for override in overrides for arg in ("-c", override)]


def opencode_env(url: str) -> dict[str, str]:
    """OpenCode's provider config (inline), and no network at start-up."""

    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "local": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": f"{url}/v1", "apiKey": API_KEY},
                "models": {"scripted": {"tool_call": True}},
            }
        },
        "model": "local/scripted",
        "small_model": "local/scripted",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"edit": "allow", "bash": "allow", "external_directory": "allow"},
    }
    return {
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
        "NPM_CONFIG_REGISTRY": f"{url}/npm/",
    }


def openclaw_config(url: str, path: Path) -> dict[str, str]:
    """A user's OpenClaw config naming the scripted server as its only provider, offline."""
    model = {"id": "scripted-model", "name": "Scripted", "reasoning": False, "input": ["text"],
             "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
             "contextWindow": 128000, "maxTokens": 8192}  # fmt: skip
    provider = {"baseUrl": f"{url}/v1", "apiKey": API_KEY, "api": "openai-completions",
                "models": [model]}  # fmt: skip
    models = {
        "mode": "replace",
        "catalogRefresh": {"enabled": False},
        "providers": {"scripted": provider},
    }
    config = {
        "models": models,
        "agents": {"defaults": {"model": {"primary": "scripted/scripted-model"}}},
        "tools": {"exec": {"notifyOnExit": False, "mode": "ask"}},
        "plugins": {"entries": {"memory-core": {"config": {"dreaming": {"enabled": False}}}}},
    }
    path.write_text(json.dumps(config))
    return {"OPENCLAW_CONFIG_PATH": str(path), "DO_NOT_TRACK": "1"}
