"""Take hosts out of the swarm: drain, demote (managers), leave, remove the node.

    pyinfra -y inventories/lab.py deploys/remove_host.py --data remove=host3

Refused, before anything changes, when it would leave fewer managers than a majority of
the current ones. Afterwards delete the host from the inventory (in the lab:
`beamfleet lab remove-host host3`), or the next deploys/swarm.py run joins it again.
"""

from pyinfra import host

from beamfleet.controller.deploys.swarm import remove_hosts

remove_hosts(str(host.data.get("remove") or ""))
