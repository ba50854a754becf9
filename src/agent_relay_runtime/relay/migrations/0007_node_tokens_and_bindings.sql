-- Nodes enrolled over REST (relaycast's POST /v1/nodes): the SHA-256 of the node's token
-- (the token itself is shown once and never stored), the role and capacity it was enrolled
-- with, its tags. A node that only ever connected with the workspace key has no token.
-- And the agents bound to a node over REST (POST /v1/nodes/{name}/agents): one node per
-- agent at a time.

ALTER TABLE nodes ADD COLUMN role TEXT NOT NULL DEFAULT 'broker'
    CHECK (role IN ('direct', 'broker'));
ALTER TABLE nodes ADD COLUMN max_agents INTEGER NOT NULL DEFAULT 0;   -- 0: no limit
ALTER TABLE nodes ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN token_hash TEXT;
CREATE UNIQUE INDEX nodes_by_token ON nodes (token_hash);  -- NULLs do not collide

CREATE TABLE node_agent_bindings (
    id           TEXT PRIMARY KEY,
    node_id      TEXT NOT NULL REFERENCES nodes(id),
    agent_id     TEXT NOT NULL UNIQUE REFERENCES agents(id),
    session_ref  TEXT,
    priority     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    updated_at   TEXT
);
CREATE INDEX node_agent_bindings_by_node ON node_agent_bindings (node_id, created_at);

-- The agents a node hosts over its socket (agents.node_id), looked up per node.
CREATE INDEX agents_by_node ON agents (node_id);
