"""pyinfra facts: swarm state, nodes and tokens, services, secrets, the BEAM mesh."""
