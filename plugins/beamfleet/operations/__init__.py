"""beamfleet.operations: pyinfra operations (``beamfleet.operations.swarm``)."""
