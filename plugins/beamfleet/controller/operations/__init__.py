"""pyinfra operations: the swarm, images, secrets and services."""
