"""beamfleet.facts."""
