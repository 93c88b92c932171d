"""A local multi-host lab: N Debian "hosts" as containers, reachable by pyinfra over SSH.

Each host is a container of the outer Docker engine that boots systemd as PID 1 and runs
sshd, with its own address on a user-defined bridge network with an explicit subnet
(lab ``default`` -> 10.232.0.0/24, other labs get another free /24 of 10.232.0.0/16, so
labs can run side by side). Hosts start bare: no Docker engine, exactly like a fresh VM;
the deploys install it. The lab writes a pyinfra inventory (groups ``managers`` and
``workers``) that the deploys use like any other inventory.

The lab runs its own DNS server on the network's gateway (see beamfleet_lab.dns), which
every host resolves with: ``hosts.<name>.beamfleet.test`` has one A record per host, and
``hostN`` / ``hostN.<name>.beamfleet.test`` is that host; the lab rewrites the records on
every host change.

Everything the lab creates carries the label ``io.beamfleet.lab=<name>`` so ``down``
removes exactly that and nothing else. Its state (SSH key, host keys, known_hosts, the
host list, the DNS server's records and pid file) lives in ``<root>/.lab/<name>/``, private
key mode 0600.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from beamfleet_lab.dns import (
    DnsServer,
    lab_domain,
    record_name,
    render_hosts,
    running_pid,
    stop_dnsmasq,
)
from beamfleet_lab.docker import docker, docker_out, ids_with_label, inspect_json
from beamfleet_lab.errors import (
    LabError,
    LabExistsError,
    LabNotFoundError,
    LabTooOldError,
    SubnetExhaustedError,
    UnknownHostError,
)
from beamfleet_lab.images import ensure_base_images, ensure_host_image
from beamfleet_lab.inventory_file import render_inventory
from beamfleet_lab.kernel import esp_supported, raise_neighbour_table

LAB_LABEL = "io.beamfleet.lab"
HOST_LABEL = "io.beamfleet.lab.host"
LAB_SUPERNET = ipaddress.IPv4Network("10.232.0.0/16")
DEFAULT_LAB = "default"
GROUPS = ("managers", "workers")
# Host N gets .(10+N) of the lab's /24; .1 is the bridge gateway.
FIRST_HOST_OCTET = 11
MAX_HOSTS = 200
SSH_READY_TIMEOUT = 90.0
NETWORK_ATTEMPTS = 10  # bounded: each failed attempt means another lab took the subnet
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

# The flags that let systemd and an inner dockerd run unprivileged in a container here:
# --privileged fails on these VMs (no CAP_SYS_RESOURCE in the bounding set).
HOST_RUN_FLAGS: tuple[str, ...] = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    # An anonymous volume, so the inner engine's overlay2 is not on overlayfs; `down`
    # removes it with the container (docker rm -v).
    "-v", "/var/lib/docker",
    # `systemctl reboot` on a host ends its systemd (PID 1): the engine starts the
    # container again, as a VM comes back from a reboot.
    "--restart", "unless-stopped",
)  # fmt: skip


@dataclass
class LabHost:
    """One lab host: its inventory name, address, inventory group and container."""

    name: str
    ip: str
    group: str
    container: str


@dataclass
class LabState:
    """What ``lab up`` created, persisted as ``<state dir>/lab.json``."""

    name: str
    subnet: str
    image: str
    hosts: list[LabHost] = field(default_factory=list)
    # The lab's DNS record (A: every host) and the server answering it (the gateway);
    # empty in the state of a lab created before the lab had a DNS server.
    dns_name: str = ""
    dns_server: str = ""

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise UnknownHostError(f"no host {name!r} in lab {self.name!r} (hosts: {known})")


@dataclass
class HostStatus:
    """A row of ``lab status``."""

    name: str
    group: str
    ip: str
    container_state: str
    ssh: bool


def validate_lab_name(name: str) -> str:
    """Return ``name`` if it is a valid lab name, else raise LabError saying why."""
    if not _NAME_RE.match(name):
        raise LabError(
            f"invalid lab name {name!r}: use 1-20 characters a-z, 0-9 and '-', "
            "starting with a letter"
        )
    return name


class Lab:
    """A named lab rooted at a project directory (state in ``<root>/.lab/<name>``)."""

    def __init__(self, name: str = DEFAULT_LAB, root: Path | None = None) -> None:
        self.name = validate_lab_name(name)
        self.root = (root or Path.cwd()).resolve()
        self.state_dir = self.root / ".lab" / name
        self.key_path = self.state_dir / "id_ed25519"
        self.known_hosts_path = self.state_dir / "known_hosts"
        self.state_path = self.state_dir / "lab.json"
        inventory_name = "lab.py" if name == DEFAULT_LAB else f"{name}.py"
        self.inventory_path = self.root / "inventories" / inventory_name

    # -- resources names -----------------------------------------------------------------

    @property
    def network_name(self) -> str:
        return f"beamfleet-lab-{self.name}"

    def container_name(self, host: str) -> str:
        return f"beamfleet-lab-{self.name}-{host}"

    @property
    def dns_name(self) -> str:
        """The name whose A records are every host's address: ``hosts.<name>.beamfleet.test``."""
        return record_name(self.name)

    @property
    def dns_server(self) -> str:
        """The address of the lab's DNS server (its network's gateway), from the saved state.

        LabNotFoundError when the lab is not up; LabTooOldError for a lab created before
        the lab had a DNS server.
        """
        state = self.load()
        self._require_dns(state)
        return state.dns_server

    @property
    def dns_dir(self) -> Path:
        """Where the DNS server's records, pid file and log live."""
        return self.state_dir / "dns"

    # -- state ---------------------------------------------------------------------------

    def load(self) -> LabState:
        """The lab's saved state; LabNotFoundError when it was never started."""
        if not self.state_path.exists():
            hint = "" if self.name == DEFAULT_LAB else f" --name {self.name}"
            raise LabNotFoundError(
                f"lab {self.name!r} is not running: start it with `beamfleet lab up{hint}`"
            )
        raw = json.loads(self.state_path.read_text())
        hosts = [LabHost(**h) for h in raw.pop("hosts")]
        return LabState(hosts=hosts, **raw)

    def _save(self, state: LabState) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
        tmp.replace(self.state_path)
        self._write_inventory(state)
        if state.dns_server:
            self._dns(state).write_hosts(render_hosts(state.name, _name_ips(state.hosts)))

    def _write_inventory(self, state: LabState) -> None:
        self.inventory_path.parent.mkdir(parents=True, exist_ok=True)
        self.known_hosts_path.write_text(
            "".join(f"{h.ip} {self._host_pubkey(h.name)}\n" for h in state.hosts)
        )
        text = render_inventory(
            lab=state.name,
            hosts=[(h.name, h.ip, h.group) for h in state.hosts],
            key_path=self.key_path,
            known_hosts_path=self.known_hosts_path,
            encrypted_overlays=esp_supported(),
            subnet=state.subnet,
            dns_name=state.dns_name,
        )
        self.inventory_path.write_text(text)

    # -- up / down -----------------------------------------------------------------------

    def up(self, hosts: int = 3, managers: int = 1, suite: str = "bookworm") -> LabState:
        """Create and start the lab; a no-op when it already runs with these counts."""
        if not 1 <= managers <= hosts <= MAX_HOSTS:
            raise LabError(f"need 1 <= managers ({managers}) <= hosts ({hosts}) <= {MAX_HOSTS}")
        if self.state_path.exists():
            state = self.load()
            have = len(state.hosts)
            have_managers = sum(h.group == "managers" for h in state.hosts)
            if (have, have_managers) != (hosts, managers):
                raise LabExistsError(
                    f"lab {self.name!r} already runs {have} hosts ({have_managers} managers): "
                    f"use `beamfleet lab add-host`, or `beamfleet lab down` first"
                )
            self._require_dns(state)
            ensure_base_images()
            raise_neighbour_table()
            # Processes do not outlive a session while containers may: start the DNS server
            # again (a no-op when it runs) before the hosts, so they boot resolving.
            self._start_dns(state)
            self._start_stopped(state)
            return state
        image = ensure_host_image(suite)
        raise_neighbour_table()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        self._ensure_client_key()
        try:
            subnet = self._create_network()
            state = LabState(
                name=self.name,
                subnet=str(subnet),
                image=image,
                dns_name=self.dns_name,
                dns_server=_gateway(subnet),
            )
            for index in range(1, hosts + 1):
                group = "managers" if index <= managers else "workers"
                state.hosts.append(self._plan_host(subnet, index, group))
            self._start_dns(state)
            self._create_hosts(state, state.hosts)
            self._save(state)
        except BaseException:
            # Leave nothing half-made behind: the next `up` starts from scratch.
            self.down()
            raise
        return state

    def down(self) -> list[str]:
        """Remove everything this lab created; returns what was removed."""
        removed: list[str] = []
        if stop_dnsmasq(DnsServer.pid_file_in(self.dns_dir)):
            removed.append(f"DNS server of lab {self.name!r}")
        containers = ids_with_label("container", f"{LAB_LABEL}={self.name}")
        if containers:
            docker("rm", "-f", "-v", *containers, timeout=120)
            removed += [f"container {c[:12]}" for c in containers]
        for net in ids_with_label("network", f"{LAB_LABEL}={self.name}"):
            docker("network", "rm", net)
            removed.append(f"network {self.network_name}")
        if self.inventory_path.exists() and self._inventory_is_ours():
            self.inventory_path.unlink()
            removed.append(str(self.inventory_path))
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            removed.append(str(self.state_dir))
        return removed

    def add_host(self, group: str = "workers") -> LabHost:
        """Start one more host in ``group`` and add it to the inventory."""
        if group not in GROUPS:
            raise LabError(f"unknown group {group!r}: use one of {', '.join(GROUPS)}")
        state = self.load()
        self._require_dns(state)
        self._start_dns(state)
        index = 1 + max(
            (int(h.ip.rsplit(".", 1)[1]) - FIRST_HOST_OCTET + 1 for h in state.hosts), default=0
        )
        if index > MAX_HOSTS:
            raise LabError(f"lab {self.name!r} already has the maximum of {MAX_HOSTS} hosts")
        host = self._plan_host(ipaddress.IPv4Network(state.subnet), index, group)
        self._create_hosts(state, [host])
        state.hosts.append(host)
        self._save(state)
        return host

    def move_host(self, name: str, group: str) -> LabHost:
        """Move a host to another inventory group (the next deploy promotes or demotes it)."""
        if group not in GROUPS:
            raise LabError(f"unknown group {group!r}: use one of {', '.join(GROUPS)}")
        state = self.load()
        host = state.host(name)
        host.group = group
        self._save(state)
        return host

    def forget_host(self, name: str) -> LabHost:
        """Stop and remove one host's container and drop it from the inventory.

        Run the removal deploy first (deploys/remove_host.py) so the swarm lets it go.
        """
        state = self.load()
        host = state.host(name)
        docker("rm", "-f", "-v", host.container, timeout=120)
        state.hosts.remove(host)
        self._save(state)
        return host

    # -- status / ssh --------------------------------------------------------------------

    def status(self) -> list[HostStatus]:
        """Container state and SSH reachability of every host."""
        state = self.load()
        info = {
            c["Name"].lstrip("/"): c["State"]["Status"]
            for c in inspect_json("container", [h.container for h in state.hosts])
        }
        return [
            HostStatus(
                name=h.name,
                group=h.group,
                ip=h.ip,
                container_state=info.get(h.container, "missing"),
                ssh=_ssh_banner(h.ip, timeout=2.0),
            )
            for h in state.hosts
        ]

    def ssh_argv(self, host: str, command: Sequence[str] = ()) -> list[str]:
        """The ``ssh`` command line that logs into ``host`` with the lab's key."""
        target = self.load().host(host)
        return [
            "ssh",
            "-i", str(self.key_path),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_path}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "LogLevel=ERROR",
            f"root@{target.ip}",
            *command,
        ]  # fmt: skip

    def dns_running(self) -> bool:
        """Whether the lab's DNS server process runs (``lab up`` starts it again if not)."""
        return running_pid(DnsServer.pid_file_in(self.dns_dir)) is not None

    # -- internals -----------------------------------------------------------------------

    def _dns(self, state: LabState) -> DnsServer:
        return DnsServer(self.dns_dir, listen=state.dns_server, domain=lab_domain(state.name))

    def _start_dns(self, state: LabState) -> None:
        server = self._dns(state)
        server.write_hosts(render_hosts(state.name, _name_ips(state.hosts)))
        server.ensure_running()

    def _require_dns(self, state: LabState) -> None:
        if not state.dns_server:
            hint = "" if self.name == DEFAULT_LAB else f" --name {self.name}"
            raise LabTooOldError(
                f"lab {self.name!r} was created before the lab had a DNS server, and its hosts "
                f"do not resolve with one: `beamfleet lab down{hint}` then `beamfleet lab up{hint}`"
            )

    def _inventory_is_ours(self) -> bool:
        head = self.inventory_path.read_text(errors="replace")[:300]
        return "Generated by `beamfleet lab" in head

    def _ensure_client_key(self) -> None:
        if self.key_path.exists():
            return
        _keygen(self.key_path, comment=f"beamfleet-lab-{self.name}")

    def _host_key_dir(self, host: str) -> Path:
        return self.state_dir / "hostkeys" / host

    def _host_pubkey(self, host: str) -> str:
        text = (self._host_key_dir(host) / "ssh_host_ed25519_key.pub").read_text().split()
        return f"{text[0]} {text[1]}"

    def _create_network(self) -> ipaddress.IPv4Network:
        existing = ids_with_label("network", f"{LAB_LABEL}={self.name}")
        if existing:
            docker("network", "rm", *existing)
        # Labs started at the same moment (a test suite beside a Molecule scenario) can pick
        # the same free /24: the engine refuses the second network as overlapping, and that
        # lab picks again among what is free now.
        for _ in range(NETWORK_ATTEMPTS):
            subnet = self._pick_subnet()
            proc = docker(
                "network", "create", "--driver", "bridge",
                "--subnet", str(subnet), "--gateway", _gateway(subnet),
                "--label", f"{LAB_LABEL}={self.name}",
                self.network_name,
                check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                return subnet
            error = proc.stderr.decode(errors="replace").strip()
            if "overlap" not in error:
                raise LabError(f"docker network create {self.network_name} failed: {error}")
        raise SubnetExhaustedError(
            f"no /24 of {LAB_SUPERNET} stayed free for {NETWORK_ATTEMPTS} attempts: other labs "
            "are being created at the same time; retry"
        )

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        """10.232.0.0/24 for the default lab, else the first /24 of 10.232/16 in use by none."""
        used: list[ipaddress.IPv4Network] = []
        ids = docker_out("network", "ls", "-q").split()
        for net in inspect_json("network", ids):
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                if ":" not in cfg.get("Subnet", ":"):
                    used.append(ipaddress.IPv4Network(cfg["Subnet"], strict=False))
        candidates = list(LAB_SUPERNET.subnets(new_prefix=24))
        candidates = candidates[:1] if self.name == DEFAULT_LAB else candidates[1:]
        for subnet in candidates:
            if not any(subnet.overlaps(u) for u in used):
                return subnet
        if self.name == DEFAULT_LAB:
            raise SubnetExhaustedError(
                "10.232.0.0/24 (the default lab's subnet) is used by another docker network: "
                "remove it (docker network ls), or start the lab with another --name"
            )
        raise SubnetExhaustedError(
            "every /24 of 10.232.0.0/16 is in use: `beamfleet lab down` some"
        )

    def _plan_host(self, subnet: ipaddress.IPv4Network, index: int, group: str) -> LabHost:
        name = f"host{index}"
        ip = str(subnet.network_address + FIRST_HOST_OCTET - 1 + index)
        return LabHost(name=name, ip=ip, group=group, container=self.container_name(name))

    def _create_hosts(self, state: LabState, hosts: Sequence[LabHost]) -> None:
        with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
            list(pool.map(lambda h: self._create_host(state, h), hosts))
        deadline = time.monotonic() + SSH_READY_TIMEOUT
        for host in hosts:
            while not _ssh_banner(host.ip, timeout=1.0):
                if time.monotonic() > deadline:
                    raise LabError(
                        f"{host.name} ({host.ip}) did not answer SSH within "
                        f"{SSH_READY_TIMEOUT:.0f}s: see `docker logs {host.container}`"
                    )
                time.sleep(0.2)

    def _create_host(self, state: LabState, host: LabHost) -> None:
        keydir = self._host_key_dir(host.name)
        keydir.mkdir(parents=True, exist_ok=True)
        hostkey = keydir / "ssh_host_ed25519_key"
        if not hostkey.exists():
            _keygen(hostkey, comment=f"{host.name}.{self.name}.lab")
        # /root/.ssh as it should land in the container: 0700 dir, 0600 authorized_keys.
        dotssh = keydir / "dotssh"
        dotssh.mkdir(mode=0o700, exist_ok=True)
        (dotssh / "authorized_keys").write_text(self.key_path.with_suffix(".pub").read_text())
        (dotssh / "authorized_keys").chmod(0o600)
        docker(
            "create",
            "--name", host.container,
            "--hostname", host.name,
            "--network", self.network_name,
            "--ip", host.ip,
            # Docker's embedded resolver answers container names and forwards the rest to
            # the lab's DNS server; the search domain makes `host2` also `host2.<lab>...`.
            "--dns", state.dns_server,
            "--dns-search", lab_domain(state.name),
            "--label", f"{LAB_LABEL}={self.name}",
            "--label", f"{HOST_LABEL}={host.name}",
            *HOST_RUN_FLAGS,
            state.image,
        )  # fmt: skip
        # Keys go in before the first boot, so sshd never starts without them.
        docker("cp", str(hostkey), f"{host.container}:/etc/ssh/")
        docker("cp", f"{hostkey}.pub", f"{host.container}:/etc/ssh/")
        docker("cp", str(dotssh) + "/.", f"{host.container}:/root/.ssh")
        docker("start", host.container)

    def _start_stopped(self, state: LabState) -> None:
        info = {
            c["Name"].lstrip("/"): c["State"]["Status"]
            for c in inspect_json("container", [h.container for h in state.hosts])
        }
        missing = [h.name for h in state.hosts if h.container not in info]
        if missing:
            raise LabError(
                f"lab {self.name!r} lost hosts {', '.join(missing)}: "
                "`beamfleet lab down` then `beamfleet lab up`"
            )
        stopped = [h.container for h in state.hosts if info[h.container] != "running"]
        if stopped:
            docker("start", *stopped)


def _gateway(subnet: ipaddress.IPv4Network) -> str:
    """The bridge gateway of a lab subnet (.1), where the lab's DNS server listens."""
    return str(subnet.network_address + 1)


def _name_ips(hosts: Sequence[LabHost]) -> list[tuple[str, str]]:
    return [(h.name, h.ip) for h in hosts]


def _keygen(path: Path, comment: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    path.chmod(0o600)


def _ssh_banner(ip: str, timeout: float) -> bool:
    """Whether sshd at ``ip`` (an address the lab created) sends its banner."""
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False
