"""Two labs created at the same moment may pick the same free /24: the loser picks again.

The engine is simulated here (the race cannot be timed with a real one): the first create
is refused with Docker's own overlap message, as when another lab took the subnet between
this lab's look at the networks and its create.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

import beamfleet_lab.lab as lab_module
from beamfleet_lab.errors import LabError
from beamfleet_lab.lab import Lab

OVERLAP = b"Error response from daemon: Pool overlaps with other one on this address space"


def fake_engine(monkeypatch: pytest.MonkeyPatch, answers: list[bytes]) -> list[str]:
    free_now = [ipaddress.IPv4Network("10.232.1.0/24")]
    created: list[str] = []

    def pick(self: Lab) -> ipaddress.IPv4Network:
        return free_now[-1]

    def docker(*args: str, check: bool = True, **_: object) -> subprocess.CompletedProcess[bytes]:
        if args[:2] == ("network", "create"):
            error = answers.pop(0)
            subnet = args[args.index("--subnet") + 1]
            if error:
                # another lab took it: the next look at the networks finds the next free one
                assert subnet == str(free_now[-1])
                free_now.append(ipaddress.IPv4Network(f"10.232.{len(free_now) + 1}.0/24"))
                return subprocess.CompletedProcess(args, 1, b"", error)
            created.append(subnet)
        return subprocess.CompletedProcess(args, 0, b"", b"")

    monkeypatch.setattr(Lab, "_pick_subnet", pick)
    monkeypatch.setattr(lab_module, "docker", docker)
    monkeypatch.setattr(lab_module, "ids_with_label", lambda *a: [])
    return created


def test_a_subnet_taken_meanwhile_is_picked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    created = fake_engine(monkeypatch, [OVERLAP, b""])
    subnet = Lab("race", root=tmp_path)._create_network()
    assert created == [str(subnet)] and str(subnet) == "10.232.2.0/24"


def test_another_failure_is_reported_as_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_engine(monkeypatch, [b"Error response from daemon: permission denied"])
    with pytest.raises(LabError, match="permission denied"):
        Lab("race", root=tmp_path)._create_network()
