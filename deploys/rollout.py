"""Roll the application to a new image, one task at a time, with automatic rollback.

    pyinfra -y inventories/lab.py deploys/rollout.py --data image=app:2.0

The image must be in this machine's Docker engine (it is loaded on every host), or in a
registry the hosts pull from (``image_registry``). Each task is replaced by a new one
started first; if new tasks fail, the swarm rolls back and this run fails. Then set
``app_image`` in the inventory to the same image. See docs/cluster.md.
"""

from beamfleet.controller.deploys.cluster import rollout

rollout()
