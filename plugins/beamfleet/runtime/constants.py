"""Numbers and paths that both sides of beamfleet must agree on, each defined once.

The runtime (the agent, ``beamfleet node``) and the controller (the deploys that start the
agent and the nodes) import these; nothing else writes them down.
"""

from typing import Final

AGENT_PORT: Final = 9568
"""The agent's HTTP port (health, ``/metrics`` and ``/status``)."""

EPMD_PORT: Final = 4369
"""The Erlang port mapper's well-known port (``ERL_EPMD_PORT`` overrides it on a node)."""

COOKIE_SECRET_TARGET: Final = "erlang_cookie"
"""The file name the cookie has inside containers (a Docker secret's target)."""

COOKIE_MOUNT_PATH: Final = f"/run/secrets/{COOKIE_SECRET_TARGET}"
"""Where a container reads the cookie (Swarm mounts secrets under /run/secrets)."""
