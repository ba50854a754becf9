-- Deliveries without their workspace (their message's, and their agent's) and without
-- foreign keys: ten of these rows are written for every message fanned out to ten agents,
-- and the column and the thirty key lookups were ~10% of the writer's work a message
-- (bench/relay.py). They are written only with their message, to agents whose cursor the
-- same change advanced; an agent with deliveries is never forgotten (nodes._forget).

CREATE TABLE deliveries_lean (
    agent_id      TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    message_id    TEXT NOT NULL,
    mode          TEXT NOT NULL CHECK (mode IN ('wait', 'steer')),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'delivered', 'deferred', 'failed')),
    acked         INTEGER NOT NULL DEFAULT 0,
    available_at  TEXT,
    reason        TEXT,
    retryable     INTEGER,
    updated_at    TEXT NOT NULL,
    evidence      TEXT,
    PRIMARY KEY (agent_id, seq)
) WITHOUT ROWID;

INSERT INTO deliveries_lean (agent_id, seq, message_id, mode, status, acked, available_at,
                             reason, retryable, updated_at, evidence)
    SELECT agent_id, seq, message_id, mode, status, acked, available_at, reason, retryable,
           updated_at, evidence
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_lean RENAME TO deliveries;

-- A message's deliveries, found from the message (receipts, a watch's delivery) without
-- scanning every delivery (there is no index by message: ten more entries a message):
-- their keys, `agent_id:seq` separated by spaces (in the order the targets were given,
-- for messages written from now on); NULL for a message delivered to no one.
ALTER TABLE messages ADD COLUMN delivery_keys TEXT;
WITH keys AS (
    SELECT message_id, group_concat(agent_id || ':' || seq, ' ') AS joined
    FROM deliveries GROUP BY message_id
)
UPDATE messages SET delivery_keys = keys.joined FROM keys WHERE messages.id = keys.message_id;
