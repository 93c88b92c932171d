"""TLS distribution against real erl nodes started with ``-proto_dist inet_tls``.

Only runtimes that ship the ``ssl`` application can run TLS distribution: the OTP 25
runtime (Debian) does; the OTP 28 runtime used elsewhere in the suite has kernel, stdlib
and crypto only (``test_which_runtimes_can_run_tls_distribution`` asserts both facts),
so these tests are parametrised over OTP 25 alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from beamfleet.runtime.cli.mesh import EXIT_COMPLETE
from beamfleet.runtime.cli.node import EXIT_OK, EXIT_USAGE
from beamfleet.runtime.erlang_dist import (
    DistProtocolMismatch,
    TlsConfig,
    TlsConfigError,
    TlsHandshakeFailed,
    connect,
)
from tests.support.erlang import Epmd, ErlNode, ErlRuntime, NodeTls, runtime
from tests.support.tls_certs import Pki, make_pki

NodeFactory = Callable[..., ErlNode]
TLS_RUNTIMES = ["otp25"]  # the runtimes with the ssl application (see the first test)


@pytest.fixture(params=TLS_RUNTIMES)
def erl_runtime(request: pytest.FixtureRequest) -> ErlRuntime:
    return runtime(request.param)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_node(erl_node: NodeFactory, pki: Pki) -> NodeFactory:
    """A node with TLS distribution and a certificate of the cluster CA (by default)."""

    def factory(**kwargs: object) -> ErlNode:
        kwargs.setdefault("tls", NodeTls(pki.node.cert, pki.node.key, pki.ca.cert))
        return erl_node(**kwargs)

    return factory


def client_tls(pki: Pki) -> TlsConfig:
    return TlsConfig.from_paths(pki.client.cert, pki.client.key, pki.ca.cert)


def failure(
    node: ErlNode, tls: TlsConfig | ssl.SSLContext | None, timeout: float = 5.0
) -> BaseException:
    """What connecting to ``node`` raised (the test fails if it connected)."""

    async def attempt() -> None:
        async with connect(
            node.name, node.cookie, epmd_port=node.epmd_port, tls=tls, timeout=timeout
        ):
            pass

    with pytest.raises(Exception) as info:
        asyncio.run(attempt())
    return info.value


def test_which_runtimes_can_run_tls_distribution() -> None:
    # why TLS_RUNTIMES holds OTP 25 only: the OTP 28 runtime here lacks ssl/public_key
    assert runtime("otp25").has_app("ssl")
    assert runtime("otp25").has_app("public_key")
    assert not runtime("otp28").has_app("ssl")


def test_connects_over_tls_and_runs_rpcs(tls_node: NodeFactory, pki: Pki) -> None:
    node = tls_node()

    async def scenario() -> tuple[str, list[str], list[str], str | None, str]:
        async with connect(
            node.name, node.cookie, epmd_port=node.epmd_port, tls=client_tls(pki)
        ) as conn:
            me = str(await conn.rpc("erlang", "node", []))
            visible = await conn.nodes()
            hidden = await conn.nodes("hidden")
            return me, visible, hidden, conn.tls_version, conn.local_name

    me, visible, hidden, version, local = asyncio.run(scenario())
    assert me == node.name
    assert visible == []  # we are hidden
    assert hidden == [local]
    assert version == "TLSv1.3"


def test_a_ready_ssl_context_works_too(tls_node: NodeFactory, pki: Pki) -> None:
    node = tls_node()
    context = client_tls(pki).client_context()

    async def scenario() -> str:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port, tls=context) as conn:
            return str(await conn.rpc("erlang", "node", []))

    assert asyncio.run(scenario()) == node.name


def test_refuses_a_node_whose_certificate_is_from_another_ca(
    tls_node: NodeFactory, pki: Pki
) -> None:
    node = tls_node(tls=NodeTls(pki.other_node.cert, pki.other_node.key, pki.ca.cert))
    exc = failure(node, client_tls(pki))
    assert isinstance(exc, TlsHandshakeFailed)
    assert "certificate is not trusted" in str(exc) and "--tls-ca" in str(exc)


def test_the_node_refuses_a_client_without_a_certificate(tls_node: NodeFactory, pki: Pki) -> None:
    node = tls_node()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(pki.ca.cert)
    exc = failure(node, context)
    assert isinstance(exc, TlsHandshakeFailed)
    assert "we presented none" in str(exc)


def test_the_node_refuses_a_client_certificate_from_another_ca(
    tls_node: NodeFactory, pki: Pki
) -> None:
    node = tls_node()
    exc = failure(
        node, TlsConfig.from_paths(pki.other_client.cert, pki.other_client.key, pki.ca.cert)
    )
    assert isinstance(exc, TlsHandshakeFailed)
    assert "rejected our certificate (unknown CA)" in str(exc)


def test_plain_tcp_to_a_tls_node_says_it_expects_tls(tls_node: NodeFactory) -> None:
    node = tls_node()
    exc = failure(node, None)
    assert isinstance(exc, DistProtocolMismatch)
    assert "expects TLS distribution" in str(exc) and "--tls-cert" in str(exc)


def test_tls_to_a_plain_node_says_it_does_not_speak_tls(erl_node: NodeFactory, pki: Pki) -> None:
    node = erl_node()
    exc = failure(node, client_tls(pki), timeout=1.5)
    assert isinstance(exc, TlsHandshakeFailed)
    assert "does not speak TLS distribution" in str(exc)


def test_two_tls_nodes_connect_to_each_other(tls_node: NodeFactory, pki: Pki) -> None:
    a = tls_node()
    b = tls_node(cookie=a.cookie)

    async def scenario() -> tuple[bool, list[str], list[str]]:
        tls = client_tls(pki)
        async with connect(a.name, a.cookie, epmd_port=a.epmd_port, tls=tls) as conn_a:
            connected = await conn_a.connect_node(b.name)
            seen_by_a = await conn_a.nodes()
        # asked of b itself, over its own connection
        async with connect(b.name, b.cookie, epmd_port=b.epmd_port, tls=tls) as conn_b:
            seen_by_b = await conn_b.nodes()
        return connected, seen_by_a, seen_by_b

    connected, seen_by_a, seen_by_b = asyncio.run(scenario())
    assert connected
    assert seen_by_a == [b.name]
    assert seen_by_b == [a.name]


def cli(node: ErlNode, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BEAMFLEET_COOKIE_FILE": str(node.cookie_file),
        "ERL_EPMD_PORT": str(node.epmd_port),
    }
    result = subprocess.run(
        [sys.executable, "-m", "beamfleet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert node.cookie not in result.stdout + result.stderr
    return result


def tls_flags(pki: Pki, key: Path | None = None) -> list[str]:
    return [
        "--tls-cert",
        str(pki.client.cert),
        "--tls-key",
        str(key or pki.client.key),
        "--tls-ca",
        str(pki.ca.cert),
    ]


def test_mesh_cli_over_tls(tls_node: NodeFactory, pki: Pki) -> None:
    a = tls_node()
    b = tls_node(cookie=a.cookie)
    result = cli(a, "node", "connect", a.name, b.name, *tls_flags(pki))
    assert result.returncode == EXIT_OK, result.stderr
    result = cli(a, "mesh", a.name, b.name, "--timeout", "10", "--json", *tls_flags(pki))
    assert result.returncode == EXIT_COMPLETE, result.stderr
    report = json.loads(result.stdout)
    assert report["complete"] is True
    assert report["nodes"][a.name]["peers"] == [b.name]
    # without TLS the same nodes cannot be asked, and the reason says why
    result = cli(a, "mesh", a.name, b.name, "--timeout", "0", "--json")
    assert result.returncode != EXIT_COMPLETE
    assert "expects TLS distribution" in json.loads(result.stdout)["nodes"][a.name]["error"]


def test_a_key_file_others_can_read_is_refused(
    tls_node: NodeFactory, pki: Pki, tmp_path: Path
) -> None:
    node = tls_node()
    shared = tmp_path / "shared.key"
    shared.write_bytes(pki.client.key.read_bytes())
    shared.chmod(0o644)
    config = TlsConfig.from_paths(pki.client.cert, shared, pki.ca.cert)
    exc = failure(node, config)
    assert isinstance(exc, TlsConfigError)
    assert str(shared) in str(exc) and "chmod 400" in str(exc)
    result = cli(node, "node", "ping", node.name, *tls_flags(pki, key=shared))
    assert result.returncode == EXIT_USAGE
    assert "chmod 400" in result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_a_tls_node_registers_in_epmd_as_usual(epmd: Epmd, tls_node: NodeFactory) -> None:
    # TLS nodes register in EPMD like any other: their TLS port is what EPMD gives
    node = tls_node()
    names = epmd.names()
    assert names is not None and node.alive in names
