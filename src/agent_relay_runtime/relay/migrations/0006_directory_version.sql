-- The directory's version: a counter that every change to who is who (workspaces and
-- their keys, agents and their tokens, channels and their members) moves forward, in the
-- transaction that makes the change. The store reads it at each commit; its caches of
-- those rows (a token's agent, a channel's members: what every request looks up) are
-- dropped whenever it moved. Triggers rather than the store's code: a change made by
-- any code, today's or tomorrow's, cannot forget to invalidate them.

CREATE TABLE directory_version (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    n   INTEGER NOT NULL
);
INSERT INTO directory_version (id, n) VALUES (1, 0);

CREATE TRIGGER workspaces_insert_directory AFTER INSERT ON workspaces
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER workspaces_update_directory AFTER UPDATE ON workspaces
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER workspaces_delete_directory AFTER DELETE ON workspaces
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER agents_insert_directory AFTER INSERT ON agents
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER agents_update_directory AFTER UPDATE ON agents
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER agents_delete_directory AFTER DELETE ON agents
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER agent_tokens_insert_directory AFTER INSERT ON agent_tokens
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER agent_tokens_update_directory AFTER UPDATE ON agent_tokens
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER agent_tokens_delete_directory AFTER DELETE ON agent_tokens
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER channels_insert_directory AFTER INSERT ON channels
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER channels_update_directory AFTER UPDATE ON channels
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER channels_delete_directory AFTER DELETE ON channels
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER channel_members_insert_directory AFTER INSERT ON channel_members
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER channel_members_update_directory AFTER UPDATE ON channel_members
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER channel_members_delete_directory AFTER DELETE ON channel_members
BEGIN
    UPDATE directory_version SET n = n + 1 WHERE id = 1;
END;
