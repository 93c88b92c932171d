"""beamfleet.lab."""
