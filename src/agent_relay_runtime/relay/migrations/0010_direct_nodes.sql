-- An agent's implicit direct node (relaycast's POST /v1/agent/node-token, which the SDK's
-- WsClient calls with an agent token on every connect): role 'direct', max_agents 1,
-- hosting exactly the agent it was made for. One per agent.

ALTER TABLE nodes ADD COLUMN direct_agent_id TEXT REFERENCES agents(id);
CREATE UNIQUE INDEX nodes_by_direct_agent ON nodes (direct_agent_id);  -- NULLs do not collide
