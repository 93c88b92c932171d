"""beamfleet.facts: pyinfra facts (``beamfleet.facts.swarm``: swarm state, nodes, tokens)."""
