"""beamfleet.deploys."""
