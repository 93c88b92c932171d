"""beamfleet.discovery."""
