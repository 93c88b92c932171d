"""beamfleet.naming."""
