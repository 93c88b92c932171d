"""Take hosts out of the cluster.

    pyinfra -y inventories/lab.py deploys/remove_host.py --data remove=host3

Swarm mode: drain, demote (managers), leave, remove the node; refused, before anything
changes, when it would leave fewer managers than a majority of the current ones. Host
mode: the host's node stops cleanly, its agent and port mapper stop, and the other hosts'
agents stop looking for it. Afterwards delete the host from the inventory (in the lab:
`beamfleet lab remove-host host3`), or the next deploys/swarm.py run joins it again.
"""

from pyinfra import host

from beamfleet.controller.deploys.cluster import remove_hosts

remove_hosts(str(host.data.get("remove") or ""))
