"""The one kernel every lab host shares, and the limit that fails first when they scale.

All lab hosts are containers of this machine, so their overlay tasks fill one kernel's
neighbour (ARP) table. With the kernel's defaults (gc_thresh1/2/3 = 128/512/1024), about
40 app tasks on 3 lab hosts overflow it ("neighbor table overflow" in dmesg) and every
lab host becomes unreachable, SSH included. The lab raises the thresholds before it
starts hosts; it never lowers a value someone set higher.
"""

from __future__ import annotations

import gzip
from pathlib import Path

NEIGH_DIR = Path("/proc/sys/net/ipv4/neigh/default")
# Room for a few hundred overlay peers per host, as the engine deploy sets on real hosts.
NEIGHBOUR_THRESHOLDS = {"gc_thresh1": 4096, "gc_thresh2": 8192, "gc_thresh3": 16384}


def raise_neighbour_table(directory: Path = NEIGH_DIR) -> dict[str, int]:
    """Raise the neighbour-table thresholds to at least :data:`NEIGHBOUR_THRESHOLDS`.

    Returns the values in force afterwards. A threshold that cannot be written (not root,
    a read-only /proc) raises ``OSError`` only when it is below what the lab needs.

    Example::

        raise_neighbour_table()   # {"gc_thresh1": 4096, "gc_thresh2": 8192, ...}
    """
    in_force: dict[str, int] = {}
    # thresh3 first: the kernel refuses a thresh1/2 above the current thresh3 on some
    # versions, so raise from the top down.
    for name in sorted(NEIGHBOUR_THRESHOLDS, reverse=True):
        path = directory / name
        current = int(path.read_text().split()[0])
        wanted = NEIGHBOUR_THRESHOLDS[name]
        if current < wanted:
            path.write_text(f"{wanted}\n")
            current = int(path.read_text().split()[0])
        in_force[name] = current
    return in_force


KERNEL_CONFIG = Path("/proc/config.gz")


def esp_supported(config: Path = KERNEL_CONFIG) -> bool:
    """Whether this kernel has IPsec ESP, which Docker's encrypted overlays need.

    Read from the kernel's own configuration; a kernel that does not publish it counts as
    without (the lab then deploys unencrypted overlays rather than ones that pass no
    traffic: Docker creates an encrypted overlay either way).
    """
    try:
        text = gzip.decompress(config.read_bytes()).decode(errors="replace")
    except OSError:
        return False
    options = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("CONFIG_"))
    return all(options.get(name) in ("y", "m") for name in ("CONFIG_INET_ESP", "CONFIG_XFRM_USER"))
