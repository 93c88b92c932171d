"""The certificates the Swarm deploy issues (``assets/remote/dist_tls.py``), used for real.

The script runs here as it runs on a manager, with openssl, against a fake ``docker``
that records its arguments. Its node bundle (every address of the subnet as a name) then
serves two real OTP nodes with TLS distribution, verification both ways, which connect to
each other (OTP checks the peer's certificate against the host part of its name); its
agent bundle is the client certificate of beamfleet's own client.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from beamfleet.runtime.erlang_dist import connect
from beamfleet.runtime.erlang_dist.tls import TlsConfig
from tests.support.erlang import ErlNode, ErlRuntime, NodeTls, runtime

SCRIPT = Path(__file__).parents[2] / "plugins" / "beamfleet" / "assets" / "remote" / "dist_tls.py"
FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> "$DOCKER_LOG"
"""


@pytest.fixture
def erl_runtime() -> ErlRuntime:
    return runtime("otp25")  # the runtime here with the ssl application


@pytest.fixture
def issued(tmp_path: Path) -> tuple[Path, Path]:
    """Version 1 of application ``demo`` for 127.0.0.0/24: (its directory, docker's log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    directory = tmp_path / "tls" / "demo"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(log)}
    argv = [sys.executable, str(SCRIPT), "issue", "demo", str(directory), "1", "127.0.0.0/24"]
    subprocess.run([*argv, "30", "3650"], env=env, check=True, timeout=120)
    return directory, log


def connects(*, via: ErlNode, to: ErlNode, client: TlsConfig) -> bool:
    """Our client, on ``via``, has it connect to ``to``: then ``via`` lists ``to``, only it."""

    async def scenario() -> tuple[bool, list[str]]:
        async with connect(via.name, via.cookie, epmd_port=via.epmd_port, tls=client) as conn:
            return await conn.connect_node(to.name), await conn.nodes()

    connected, seen = asyncio.run(scenario())
    return connected and seen == [to.name]


def test_keys_are_owner_only_and_reach_docker_as_files(issued: tuple[Path, Path]) -> None:
    directory, log = issued
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert oct((directory / "ca.key").stat().st_mode & 0o777) == "0o400"
    for bundle in ("node.pem", "agent.pem"):
        path = directory / "v1" / bundle
        assert oct(path.stat().st_mode & 0o777) == "0o400"
        text = path.read_text()
        assert "BEGIN CERTIFICATE" in text and "PRIVATE KEY" in text
    assert not list((directory / "v1").glob("*.key")), "a bare key was left behind"
    calls = log.read_text()
    for name in ("demo_dist_ca.v1", "demo_dist_node.v1", "demo_dist_agent.v1"):
        assert "secret create --label io.beamfleet.app=demo" in calls and name in calls
    assert "PRIVATE KEY" not in calls  # files, never contents, on docker's command line


def test_state_reads_the_version_and_expiry_without_keys(issued: tuple[Path, Path]) -> None:
    directory, _ = issued
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "state", str(directory)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    state = json.loads(out)
    assert state["version"] == 1
    assert 29 * 86400 < state["node_not_after"] - time.time() <= 30 * 86400 + 60
    assert state["ca_not_after"] - time.time() > 3000 * 86400


def test_two_real_nodes_and_the_client_use_them(
    issued: tuple[Path, Path], erl_node: Callable[..., ErlNode]
) -> None:
    directory, _ = issued
    bundle, agent, ca = (
        directory / "v1" / "node.pem",
        directory / "v1" / "agent.pem",
        directory / "ca.pem",
    )
    node_tls = NodeTls(bundle, bundle, ca)
    a = erl_node(tls=node_tls)
    b = erl_node(tls=node_tls, cookie=a.cookie)
    assert connects(via=a, to=b, client=TlsConfig.from_paths(agent, agent, ca))


def _openssl(*argv: str) -> str:
    return subprocess.run(
        ["openssl", *argv], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def test_a_renewed_ca_still_verifies_what_it_signed_and_nodes_on_either_connect(
    issued: tuple[Path, Path], erl_node: Callable[..., ErlNode], tmp_path: Path
) -> None:
    directory, _ = issued
    ca = directory / "ca.pem"
    old = tmp_path / "old-ca.pem"
    old.write_text(ca.read_text())
    subprocess.run(
        [sys.executable, str(SCRIPT), "renew-ca", "demo", str(directory), "5000"],
        check=True, timeout=60,
    )  # fmt: skip
    assert _openssl("x509", "-in", str(ca), "-noout", "-serial") != _openssl(
        "x509", "-in", str(old), "-noout", "-serial"
    )
    assert _openssl("x509", "-in", str(ca), "-noout", "-pubkey") == _openssl(
        "x509", "-in", str(old), "-noout", "-pubkey"
    )  # the same key
    assert oct(ca.stat().st_mode & 0o777) == "0o444"
    node = directory / "v1" / "node.pem"
    assert "OK" in _openssl("verify", "-CAfile", str(ca), str(directory / "v1" / "node.crt"))
    # a node still trusting the old CA certificate and one trusting the new one connect
    a = erl_node(tls=NodeTls(node, node, old))
    b = erl_node(tls=NodeTls(node, node, ca), cookie=a.cookie)
    agent = directory / "v1" / "agent.pem"
    assert connects(via=b, to=a, client=TlsConfig.from_paths(agent, agent, ca))
