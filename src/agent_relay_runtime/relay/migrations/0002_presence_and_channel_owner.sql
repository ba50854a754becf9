-- What relaycast clients read of an agent (persona, presence) and of a channel (its creator,
-- metadata).
ALTER TABLE agents ADD COLUMN persona TEXT;
ALTER TABLE agents ADD COLUMN status TEXT NOT NULL DEFAULT 'offline'
    CHECK (status IN ('online', 'offline', 'away'));
ALTER TABLE agents ADD COLUMN last_seen TEXT;
ALTER TABLE channels ADD COLUMN created_by TEXT REFERENCES agents(id);
ALTER TABLE channels ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
