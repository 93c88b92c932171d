"""Roll the applications to what the inventory says, one task at a time, each new node in
the complete mesh before the next; a node that does not join puts the previous version back.

    pyinfra -y inventories/lab.py deploys/rollout.py                 # every application
    pyinfra -y inventories/lab.py deploys/rollout.py --data app=chat # one of `apps`

Set the new image (`app_image`, or `image` in an entry of `apps`), build, environment,
limits or replicas in the inventory first: only the applications whose service changed
roll; if a new node does not join the mesh within `roll_timeout`, the previous version
goes back and this run fails naming the node. Images must be in this
machine's Docker engine (loaded on every host) or in a registry (``image_registry``).
See docs/cluster.md.
"""

from beamfleet.controller.deploys.cluster import rollout

rollout()
