"""Maintain the hosts one at a time, the cluster complete between moves.

    pyinfra -y inventories/lab.py deploys/maintenance.py --data maintenance=reboot
    pyinfra -y inventories/lab.py deploys/maintenance.py --data maintenance=upgrade \
        --data maintain=host2

Each host's node leaves the mesh cleanly, the host is maintained (reboot, package upgrade,
or `maintenance_command`), the node comes back and must be in the complete mesh before
the next host; the run stops at the first host that does not. See docs/host-mode.md.
"""

from beamfleet.controller.deploys.maintenance import maintenance

maintenance()
