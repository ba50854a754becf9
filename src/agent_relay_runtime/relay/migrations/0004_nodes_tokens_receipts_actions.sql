-- Nodes (runtimes that host agents and handle actions), agents' extra tokens, and what
-- receipts and invocations record beyond 0001.

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    capabilities  TEXT NOT NULL DEFAULT '[]',
    version       TEXT,
    status        TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
    last_seen     TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (workspace_id, name)
);

-- A node gets a fresh token for its agent each time it registers it (and hands it to the
-- session); the earlier ones stay valid until the agent is deregistered.
CREATE TABLE agent_tokens (
    token_hash  TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    created_at  TEXT NOT NULL
);
CREATE INDEX agent_tokens_by_agent ON agent_tokens (agent_id);

-- How a delivered receipt was observed (a protocol ack, a hook, the screen).
ALTER TABLE deliveries ADD COLUMN evidence TEXT;

ALTER TABLE actions ADD COLUMN timeout_s REAL;
ALTER TABLE invocations ADD COLUMN caller_name TEXT;
ALTER TABLE invocations ADD COLUMN handler_node TEXT;
ALTER TABLE invocations ADD COLUMN dispatched_at TEXT;
CREATE INDEX invocations_by_action ON invocations (workspace_id, action, status);
