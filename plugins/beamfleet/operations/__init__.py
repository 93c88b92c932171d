"""beamfleet.operations."""
