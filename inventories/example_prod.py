"""Example production inventory for beamfleet (copy it, then edit the hosts).

    pyinfra -y inventories/prod.py deploys/swarm.py      # engine + swarm
    pyinfra -y inventories/prod.py deploys/remove_host.py --data remove=app-worker-3

Groups: ``managers`` (an odd number: 1, 3 or 5; the first one initialises a new swarm)
and ``workers``. Every host is a Debian or Ubuntu machine reachable over SSH with sudo.
Keys are checked before anything changes (docs/swarm.md lists them all): a typo such as
``swarm_advertise_adr`` stops the run with "did you mean `swarm_advertise_addr`?".
"""

# Shared by every host: how pyinfra logs in, and swarm-wide settings (read on the
# acting manager).
_COMMON = {
    "ssh_user": "deploy",
    "ssh_key": "~/.ssh/deploy_ed25519",
    "_sudo": True,
    # overlay networks get /24s from this range; keep it clear of your VPC ranges
    "swarm_default_addr_pool": "10.233.0.0/16",
    "swarm_networks": {
        "beam": {"subnet": "10.233.100.0/24", "attachable": True, "encrypted": True},
    },
}

managers = [
    ("app-manager-1", {**_COMMON, "ssh_hostname": "203.0.113.10",
                       "swarm_advertise_addr": "10.0.1.10"}),
    ("app-manager-2", {**_COMMON, "ssh_hostname": "203.0.113.11",
                       "swarm_advertise_addr": "10.0.2.10"}),
    ("app-manager-3", {**_COMMON, "ssh_hostname": "203.0.113.12",
                       "swarm_advertise_addr": "10.0.3.10"}),
]

workers = [
    # No swarm_advertise_addr: the host's private address (default-route interface) is used.
    ("app-worker-1", {**_COMMON, "ssh_hostname": "203.0.113.20",
                      "swarm_node_labels": {"zone": "a"}}),
    ("app-worker-2", {**_COMMON, "ssh_hostname": "203.0.113.21",
                      "swarm_node_labels": {"zone": "b"}}),
    ("app-worker-3", {**_COMMON, "ssh_hostname": "203.0.113.22",
                      "swarm_node_labels": {"zone": "c"},
                      # daemon.json of this host, e.g. a bigger log rotation
                      "docker_daemon": {"log-driver": "json-file",
                                        "log-opts": {"max-size": "50m", "max-file": "3"}}}),
]
