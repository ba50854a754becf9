-- Watches: an agent asks to be told once when another agent goes idle or takes a
-- delivery. A pending watch is a row; firing deletes it in the transaction that writes
-- the notification, so it fires once.

CREATE TABLE watches (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    watcher_id    TEXT NOT NULL REFERENCES agents(id),   -- who is told
    agent_id      TEXT NOT NULL REFERENCES agents(id),   -- who is watched
    on_event      TEXT NOT NULL CHECK (on_event IN ('idle', 'delivered')),
    message_id    TEXT REFERENCES messages(id),          -- 'delivered' of this message only
    after_seq     INTEGER NOT NULL,                      -- the log's head when made: only later events fire it
    created_at    TEXT NOT NULL
);
CREATE INDEX watches_by_agent ON watches (agent_id);
CREATE INDEX watches_by_watcher ON watches (watcher_id);

-- How far the watch service has read the event log (all workspaces: seq is global).
CREATE TABLE watch_cursor (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL
);

-- An agent's latest status, found without scanning the log: only status events are
-- indexed, so other appends (messages, receipts) pay nothing for it.
CREATE INDEX events_status_by_agent ON events (workspace_id, agent, seq)
    WHERE type = 'status.changed';
