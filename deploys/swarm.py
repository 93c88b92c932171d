"""Docker Swarm from the inventory: engine on every host, managers and workers joined.

    pyinfra -y inventories/lab.py deploys/swarm.py

Groups ``managers`` (odd count; the first one initialises a new swarm) and ``workers``.
Host data keys: see docs/swarm.md. Running it again changes nothing; a host added to the
inventory joins; a host moved between groups is promoted or demoted.
"""

from beamfleet.controller.deploys.swarm import swarm_cluster

swarm_cluster()
