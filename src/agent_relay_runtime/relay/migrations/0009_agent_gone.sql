-- An agent its node deregistered (agent.deregister, or left out of an inventory.sync) is
-- gone until a node registers it again: gone_seq is the seq of its agent.deregistered
-- event then, NULL otherwise. It tells a watch made on an agent that is gone to fire at
-- once, and is not the same as offline: an agent whose node went away is offline and
-- may come back with it, so it is not gone.

ALTER TABLE agents ADD COLUMN gone_seq INTEGER;
