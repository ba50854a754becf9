"""The relay: the embedded workspace server, its store, and the node protocol."""
