-- DMs, channel muting and archiving, files and attachments, and what the inbox reads.
--
-- DMs and group DMs are rows of `channels` (kind 'dm' / 'group_dm'), their participants
-- rows of `channel_members`; nothing new is needed for them. A 1:1 DM is named
-- 'dm/<agent id>/<agent id>' (the two ids in order), so a pair always finds the same one;
-- a group DM 'group/<random>'. A '/' never occurs in a channel name, so no
-- /v1/channels/{name} route can reach a DM.

-- Who muted what: kept apart from membership, so leaving and joining again keeps it.
CREATE TABLE mutes (
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    muted_at    TEXT NOT NULL,
    PRIMARY KEY (channel_id, agent_id)
) WITHOUT ROWID;

-- An archived conversation takes no new messages, however they are written.
CREATE TRIGGER no_messages_into_archived BEFORE INSERT ON messages
WHEN (SELECT archived FROM channels WHERE id = NEW.channel_id) = 1
BEGIN
    SELECT RAISE(ABORT, 'the channel is archived');
END;

-- The inbox's mentions of an agent, and a channel's read status (what each member read).
CREATE INDEX mentions_by_agent ON mentions (agent_id, message_id);
CREATE INDEX reads_by_agent ON reads (agent_id, message_id);

-- A file: declared at upload, its bytes PUT to the relay (under the files directory, named
-- by the id), then completed. Deleting keeps the row (attachments refer to it), drops the
-- bytes and marks it 'deleted'.
CREATE TABLE files (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    uploaded_by   TEXT NOT NULL REFERENCES agents(id),
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL CHECK (size >= 0),   -- declared at upload
    received      INTEGER,                             -- bytes stored; NULL: none yet
    status        TEXT NOT NULL CHECK (status IN ('pending', 'complete', 'deleted')),
    expires_at    TEXT NOT NULL,                       -- the upload URL's
    created_at    TEXT NOT NULL,
    completed_at  TEXT
);
CREATE INDEX files_by_workspace ON files (workspace_id, id);

CREATE TABLE message_attachments (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    file_id     TEXT NOT NULL REFERENCES files(id),
    position    INTEGER NOT NULL,
    PRIMARY KEY (message_id, file_id)
) WITHOUT ROWID;
CREATE INDEX attachments_by_file ON message_attachments (file_id);
