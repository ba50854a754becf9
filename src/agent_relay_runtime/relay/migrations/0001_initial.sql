-- The workspace, its participants, conversations, messages, durable deliveries, actions
-- and the ordered event log. Ids are text (prefix_random); times are ISO-8601 UTC text.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL UNIQUE,       -- sha256 of the workspace key; the key is never stored
    created_at  TEXT NOT NULL
);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('agent', 'human', 'system')),
    token_hash    TEXT NOT NULL UNIQUE,
    node_id       TEXT,                     -- the node hosting it, if any
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    UNIQUE (workspace_id, name)
);

-- Channels, DMs and group DMs are all conversations.
CREATE TABLE channels (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('channel', 'dm', 'group_dm')),
    topic         TEXT,
    archived      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE channel_members (
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    joined_at   TEXT NOT NULL,
    PRIMARY KEY (channel_id, agent_id)
);

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    channel_id    TEXT NOT NULL REFERENCES channels(id),
    agent_id      TEXT NOT NULL REFERENCES agents(id),
    text          TEXT NOT NULL,
    blocks        TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    thread_id     TEXT REFERENCES messages(id),
    created_at    TEXT NOT NULL
);
CREATE INDEX messages_by_channel ON messages (channel_id, created_at);
CREATE INDEX messages_by_thread ON messages (thread_id, created_at);

CREATE TABLE mentions (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    PRIMARY KEY (message_id, agent_id)
);

CREATE TABLE reactions (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    emoji       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (message_id, agent_id, emoji)
);

CREATE TABLE reads (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    read_at     TEXT NOT NULL,
    PRIMARY KEY (message_id, agent_id)
);

-- One row per (message, target agent), written with the message. seq counts per agent;
-- (agent, seq) is the key and the delivery's id is made of it: one b-tree to append to,
-- which is what keeps fan-out writes cheap.
CREATE TABLE deliveries (
    agent_id      TEXT NOT NULL REFERENCES agents(id),
    seq           INTEGER NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    message_id    TEXT NOT NULL REFERENCES messages(id),
    mode          TEXT NOT NULL CHECK (mode IN ('wait', 'steer')),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'delivered', 'deferred', 'failed')),
    acked         INTEGER NOT NULL DEFAULT 0,
    available_at  TEXT,
    reason        TEXT,
    retryable     INTEGER,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (agent_id, seq)
) WITHOUT ROWID;

CREATE TABLE agent_cursors (
    agent_id   TEXT PRIMARY KEY REFERENCES agents(id),
    last_seq   INTEGER NOT NULL DEFAULT 0,   -- the highest seq assigned
    acked_seq  INTEGER NOT NULL DEFAULT 0    -- the highest seq acknowledged (cumulative)
);

CREATE TABLE actions (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    input_schema  TEXT NOT NULL DEFAULT '{}',
    available_to  TEXT,                      -- JSON policy; NULL: everyone
    owner         TEXT NOT NULL,             -- the connection or node that handles it
    when_offline  TEXT NOT NULL DEFAULT 'fail' CHECK (when_offline IN ('fail', 'queue')),
    registered_at TEXT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE invocations (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    action          TEXT NOT NULL,
    caller_agent_id TEXT,
    input           TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('invoked', 'completed', 'failed', 'denied')),
    output          TEXT,
    error           TEXT,
    created_at      TEXT NOT NULL,
    finished_at     TEXT
);

-- The workspace's ordered event log; seq is the subscribers' cursor.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    type          TEXT NOT NULL,
    agent         TEXT,
    action        TEXT,
    data          TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX events_by_workspace ON events (workspace_id, seq);
