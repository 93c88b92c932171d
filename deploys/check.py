"""Prove the cluster is one mesh: desired replicas = running tasks = DNS answers, and
every node sees every other node. Prints one table (node x peers seen); exits non-zero,
naming which node misses which peer, when the mesh is not complete within
``check_timeout`` seconds (default 120).

    pyinfra -y inventories/lab.py deploys/check.py

Changes nothing. The looking is done on the acting manager, from inside an agent
container (the controller cannot reach the overlay network): see beamfleet.controller.facts.beam;
in host mode on the first host, with `beamfleet mesh` (beamfleet.controller.deploys.host_mode).
"""

from beamfleet.controller.deploys.cluster import check_mesh

check_mesh()
