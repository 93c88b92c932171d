"""The BEAM cluster on Docker Swarm, from the inventory: the main deploy.

    pyinfra -y inventories/lab.py deploys/cluster.py
    pyinfra -y inventories/lab.py deploys/cluster.py --data app_replicas=6
    pyinfra -y inventories/lab.py deploys/cluster.py --data rotate_cookie=true

Swarm provisioning (deploys/swarm.py), the images, the cookie secret, the application
service and the discovery agent. Data keys and defaults: docs/cluster.md. Running it again
on an unchanged inventory changes nothing and restarts nothing.
"""

from beamfleet.controller.deploys.cluster import cluster

cluster()
