"""beamfleet.controller.deploys."""
