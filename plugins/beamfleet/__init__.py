"""beamfleet: pyinfra plugins that turn hosts into a self-healing BEAM cluster on Docker Swarm."""

__version__ = "0.1.0"
