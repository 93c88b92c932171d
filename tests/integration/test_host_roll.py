"""host_roll.sh, run for real under dash as the node's roll sends it, on a scratch tree.

The script runs as :func:`node_rolled` renders it (``sh -c <script> host_roll.sh ARGS``),
in a private mount namespace whose ``/opt`` is a scratch directory (so the gate it calls,
``/opt/beamfleet/bin/beamfleet``, is this test's and nothing of the machine's ``/opt`` is
touched). This machine runs no systemd: ``systemctl`` and the gate are fakes that log
their calls to one file, in order. A restart "boots" the release ``current`` then points
at: the gate then finds the mesh complete, unless that release holds a ``cannot-boot``
file. What systemd and real nodes do with the same steps is the host-mode lab's part
(tests/lab_host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from beamfleet.controller.operations.hosts import node_rolled
from beamfleet.controller.remote_scripts import script_shell

DASH = shutil.which("dash")
UNSHARE = shutil.which("unshare")
pytestmark = pytest.mark.skipif(
    DASH is None or UNSHARE is None or os.geteuid() != 0,
    reason="needs dash, unshare and root (a private mount namespace): scripts/setup.sh",
)

NODE_UNIT = "beamfleet-demo.service"
EPMD_UNIT = "beamfleet-epmd.service"

# systemctl: logs its argv; a restart boots what `current` points at (the mesh file says
# whether the gate will find the mesh complete) and logs the port mapper unit in place
FAKE_SYSTEMCTL = """\
#!/bin/sh
echo "systemctl $*" >> "$FAKE_LOG"
if [ "$1" = restart ]; then
    in_place=$(grep '^ExecStart=' "$FAKE_EPMD_UNIT" 2>/dev/null)
    echo "  port mapper in place: $in_place" >> "$FAKE_LOG"
    if [ -e "$(readlink "$FAKE_CURRENT")/cannot-boot" ]; then
        echo incomplete > "$FAKE_MESH"
    else
        echo complete > "$FAKE_MESH"
    fi
fi
"""
FAKE_GATE = """\
#!/bin/sh
echo "gate $(cat "$FAKE_MESH")" >> "$FAKE_LOG"
[ "$(cat "$FAKE_MESH")" = complete ] && exit 0
echo "demo@10.0.0.1 does not see demo@10.0.0.2" >&2
exit 1
"""
FAKE_JOURNALCTL = '#!/bin/sh\necho "the node\'s last words"\n'


@dataclass
class Roll:
    returncode: int
    stdout: str
    stderr: str
    log: list[str]


class Host:
    """A scratch host: releases, ``current``, the node's config, the fakes' bin dirs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opt = root / "opt"
        self.releases = root / "apps" / "demo" / "releases"
        self.releases.mkdir(parents=True)
        self.current = root / "apps" / "demo" / "current"
        self.etc = root / "etc"
        self.etc.mkdir()
        self.units = root / "systemd"
        self.units.mkdir()
        self.node_unit = self.units / NODE_UNIT
        self.epmd_unit = self.units / EPMD_UNIT
        self.node_env = self.etc / "node.env"
        self.cookie = self.etc / "cookie"
        self.cookie.write_text("c" * 48)
        self.nodes = self.etc / "nodes"
        self.nodes.write_text("demo@10.0.0.1\ndemo@10.0.0.2\n")
        self.log = root / "calls.log"
        self.mesh = root / "mesh"
        self.mesh.write_text("complete\n")
        self.bin = root / "bin"
        self.bin.mkdir()
        gate = self.opt / "beamfleet" / "bin" / "beamfleet"
        gate.parent.mkdir(parents=True)
        for path, text in (
            (self.bin / "systemctl", FAKE_SYSTEMCTL),
            (self.bin / "journalctl", FAKE_JOURNALCTL),
            (gate, FAKE_GATE),
        ):
            path.write_text(text)
            path.chmod(0o755)

    def release(self, name: str, *, boots: bool = True) -> Path:
        path = self.releases / name
        path.mkdir()
        if not boots:
            (path / "cannot-boot").touch()
        return path

    def running(self, release: Path, *, epmd: str = "/opt/beamfleet/bin/epmd") -> None:
        """The node runs ``release`` with its unit, environment and port mapper in place."""
        self.current.symlink_to(release)
        self.node_unit.write_text("[Service]\nExecStart=/start node\n")
        self.node_env.write_text('GREETING="v1"\n')
        self.epmd_unit.write_text(f"[Service]\nExecStart={epmd} -port 4369\n")

    def stage(self, path: Path, text: str) -> None:
        Path(f"{path}.staged").write_text(text)

    def roll(self, mode: str, target: Path, *config: Path) -> Roll:
        """host_roll.sh as the roll operation renders it (``node_rolled``'s command)."""
        command = script_shell(
            "host_roll.sh", mode, str(self.current), str(target), NODE_UNIT, str(self.nodes),
            str(self.cookie), "5", "demo@10.0.0.1", *map(str, config),
        )  # fmt: skip
        self.log.unlink(missing_ok=True)
        assert DASH is not None and UNSHARE is not None
        (self.bin / "sh").unlink(missing_ok=True)
        (self.bin / "sh").symlink_to(DASH)
        proc = subprocess.run(
            [UNSHARE, "--mount", "--propagation", "private", DASH, "-c",
             f'mount --bind "$FAKE_OPT" /opt && exec {command}'],
            capture_output=True, text=True, timeout=60, check=False,
            env={
                "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
                "FAKE_OPT": str(self.opt), "FAKE_LOG": str(self.log),
                "FAKE_MESH": str(self.mesh), "FAKE_CURRENT": str(self.current),
                "FAKE_EPMD_UNIT": str(self.epmd_unit),
            },
        )  # fmt: skip
        log = self.log.read_text().splitlines() if self.log.exists() else []
        return Roll(proc.returncode, proc.stdout, proc.stderr, log)

    def kept(self) -> list[str]:
        return sorted(p.name for p in self.releases.iterdir())


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_the_command_is_the_roll_operations_own() -> None:
    """The tests run the command :func:`node_rolled` yields (the same words, same order)."""
    op = node_rolled._inner
    commands = list(
        op("/c", "/r/t", unit=NODE_UNIT, nodes_file="/n", cookie="/k", timeout=5,
           node="demo@10.0.0.1", first_start=False, config=("/u", "/e"))
    )  # fmt: skip
    assert commands[-1].get_raw_value() == script_shell(
        "host_roll.sh", "roll", "/c", "/r/t", NODE_UNIT, "/n", "/k", "5", "demo@10.0.0.1",
        "/u", "/e",
    )  # fmt: skip


def test_an_environment_only_roll_removes_no_release(host: Host) -> None:
    """previous == target (only node.env changed): the release before it stays too."""
    older, running = host.release("0.1.0-aaaa"), host.release("0.2.0-bbbb")
    host.release("0.0.9-cccc")
    host.running(running)
    host.stage(host.node_env, 'GREETING="v2"\n')
    roll = host.roll("roll", running, host.node_unit, host.node_env)
    assert roll.returncode == 0, roll.stderr
    assert "demo@10.0.0.1: on 0.2.0-bbbb, in the complete mesh" in roll.stdout
    assert host.node_env.read_text() == 'GREETING="v2"\n'
    assert older.exists()
    assert host.kept() == ["0.0.9-cccc", "0.1.0-aaaa", "0.2.0-bbbb"]


def test_a_roll_to_a_new_release_keeps_it_and_the_one_before(host: Host) -> None:
    host.release("0.1.0-aaaa")
    running, new = host.release("0.2.0-bbbb"), host.release("0.3.0-cccc")
    host.running(running)
    roll = host.roll("roll", new, host.node_unit, host.node_env)
    assert roll.returncode == 0, roll.stderr
    assert os.readlink(host.current) == str(new)
    assert host.kept() == ["0.2.0-bbbb", "0.3.0-cccc"]


def test_a_staged_port_mapper_restarts_with_the_node_inside_the_gated_step(host: Host) -> None:
    """The port mapper's new unit (here: the release no longer bundles ERTS, so Debian's
    epmd) is put in place after the gate saw a complete mesh, and restarts in the same
    systemctl call as the node; nothing restarts before the gate."""
    running, new = host.release("0.1.0-aaaa"), host.release("0.2.0-bbbb")
    host.running(running)
    host.stage(host.epmd_unit, "[Service]\nExecStart=/usr/bin/epmd -port 4369\n")
    roll = host.roll("roll", new, host.epmd_unit, host.node_unit, host.node_env)
    assert roll.returncode == 0, roll.stderr
    assert "ExecStart=/usr/bin/epmd" in host.epmd_unit.read_text()
    assert not Path(f"{host.epmd_unit}.staged").exists()
    assert not Path(f"{host.epmd_unit}.previous").exists()
    assert roll.log == [
        "gate complete",
        "systemctl daemon-reload",
        f"systemctl reset-failed {EPMD_UNIT} {NODE_UNIT}",
        f"systemctl restart {EPMD_UNIT} {NODE_UNIT}",
        "  port mapper in place: ExecStart=/usr/bin/epmd -port 4369",
        "gate complete",
    ]


def test_without_a_port_mapper_change_only_the_node_restarts(host: Host) -> None:
    running, new = host.release("0.1.0-aaaa"), host.release("0.2.0-bbbb")
    host.running(running)
    host.stage(host.node_unit, "[Service]\nExecStart=/start node --new\n")
    roll = host.roll("roll", new, host.epmd_unit, host.node_unit, host.node_env)
    assert roll.returncode == 0, roll.stderr
    restarts = [line for line in roll.log if line.startswith("systemctl restart")]
    assert restarts == [f"systemctl restart {NODE_UNIT}"]


def test_a_failed_roll_puts_the_port_mapper_back_and_restarts_it_with_the_node(
    host: Host,
) -> None:
    running, broken = host.release("0.1.0-aaaa"), host.release("0.2.0-bbbb", boots=False)
    host.running(running)
    host.stage(host.epmd_unit, "[Service]\nExecStart=/usr/bin/epmd -port 4369\n")
    roll = host.roll("roll", broken, host.epmd_unit, host.node_unit, host.node_env)
    assert roll.returncode == 1
    assert (
        "demo@10.0.0.1: rolled back to 0.1.0-aaaa and the previous beamfleet-epmd.service, "
        "back in the complete mesh"
    ) in roll.stderr, roll.stderr
    assert "the node's last words" in roll.stderr
    assert "ExecStart=/opt/beamfleet/bin/epmd" in host.epmd_unit.read_text()
    assert os.readlink(host.current) == str(running)
    assert host.kept() == ["0.1.0-aaaa", "0.2.0-bbbb"]
    restarts = [
        (line, roll.log[i + 1]) for i, line in enumerate(roll.log) if "systemctl restart" in line
    ]
    assert restarts == [
        (f"systemctl restart {EPMD_UNIT} {NODE_UNIT}",
         "  port mapper in place: ExecStart=/usr/bin/epmd -port 4369"),
        (f"systemctl restart {EPMD_UNIT} {NODE_UNIT}",
         "  port mapper in place: ExecStart=/opt/beamfleet/bin/epmd -port 4369"),
    ]  # fmt: skip


def test_a_roll_that_finds_the_mesh_incomplete_touches_nothing(host: Host) -> None:
    running, new = host.release("0.1.0-aaaa"), host.release("0.2.0-bbbb")
    host.running(running)
    host.stage(host.epmd_unit, "[Service]\nExecStart=/usr/bin/epmd -port 4369\n")
    host.mesh.write_text("incomplete\n")
    roll = host.roll("roll", new, host.epmd_unit, host.node_unit, host.node_env)
    assert roll.returncode == 1
    assert "not rolled, the mesh was not complete before it" in roll.stderr
    assert roll.log == ["gate incomplete"]
    assert "ExecStart=/opt/beamfleet/bin/epmd" in host.epmd_unit.read_text()
    assert Path(f"{host.epmd_unit}.staged").exists()  # for the next run
    assert os.readlink(host.current) == str(running)


def test_an_ungated_restart_restarts_a_changed_port_mapper_with_the_node(host: Host) -> None:
    """``restart`` (TCP <-> TLS, every node at once): a staged port mapper comes along."""
    running = host.release("0.1.0-aaaa")
    host.running(running)
    host.stage(host.epmd_unit, "[Service]\nExecStart=/usr/bin/epmd -port 4369\n")
    roll = host.roll("restart", running, host.epmd_unit, host.node_unit, host.node_env)
    assert roll.returncode == 0, roll.stderr
    assert f"systemctl restart {EPMD_UNIT} {NODE_UNIT}" in roll.log
    assert not [line for line in roll.log if line.startswith("gate")]


@pytest.mark.parametrize(
    "where",
    ["outside", "nested", "dotdot", "symlink"],
)
def test_a_target_that_is_not_an_entry_of_releases_is_refused(host: Host, where: str) -> None:
    """Defence in depth behind the release checks: a successful roll removes TARGET's
    siblings, so TARGET must be one real directory directly under releases/. The script
    refuses anything else before it touches a file, and every sibling stays."""
    running = host.release("0.1.0-aaaa")
    host.running(running)
    victim = host.root / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me\n")
    target = {
        "outside": victim / "x",
        "nested": host.releases / "0.2.0-bbbb" / "inner",
        "dotdot": host.releases / ".." / ".." / ".." / "victim" / "x",
        "symlink": host.releases / "0.2.0-link",
    }[where]
    if where == "symlink":
        target.symlink_to(victim, target_is_directory=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
    roll = host.roll("roll", target, host.node_unit, host.node_env)
    assert roll.returncode == 2
    assert "is not an" in roll.stderr
    assert roll.log == []  # not even the gate ran
    assert (victim / "precious").read_text() == "keep me\n"
    assert os.readlink(host.current) == str(running)
