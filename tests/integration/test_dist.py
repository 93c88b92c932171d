"""beamfleet.runtime.erlang_dist against real erl nodes; every test runs on OTP 25 and OTP 28."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from beamfleet.runtime.erlang_dist import (
    Atom,
    AuthenticationFailed,
    ConnectionLost,
    DistTimeout,
    EpmdUnreachable,
    HandshakeRejected,
    NodeNotRegistered,
    Pid,
    Reference,
    RpcError,
    TermCodecError,
    connect,
    epmd,
)
from beamfleet.runtime.erlang_dist import connection as dist_connection
from beamfleet.runtime.erlang_dist.etf import ImproperList, decode, encode
from tests.support.erlang import Epmd, ErlNode, free_port

NodeFactory = Callable[..., ErlNode]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def test_rpc_roundtrips_terms(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            assert conn.node == node.name
            assert await conn.rpc("erlang", "node", []) == Atom(node.name)
            term = (Atom("ok"), -5, 2**200, -(2**70), 1.25, b"bin", [1, [2, 3]], (),
                    {Atom("k"): [Atom("v")], 7: b""}, ImproperList((1, 2), Atom("t")),
                    Atom("ünïcødé"), [])
            # element(1, {X}) sends X there and back through the node's own codec
            assert await conn.rpc("erlang", "element", [1, (term,)]) == term
            assert await conn.rpc("erlang", "*", [2**200, 3]) == 3 * 2**200
            pid = await conn.rpc("erlang", "whereis", [Atom("rex")])
            assert isinstance(pid, Pid) and pid.node == node.name
            ref = await conn.rpc("erlang", "make_ref", [])
            assert isinstance(ref, Reference) and ref.node == node.name
            # pids and refs go back unchanged (the node compares them with its own)
            assert await conn.rpc("erlang", "is_process_alive", [pid]) == Atom("true")
            assert await conn.rpc("erlang", "element", [1, (ref,)]) == ref
            long_atom = Atom("é" * 200)  # 400 bytes of UTF-8: ATOM_UTF8_EXT
            assert await conn.rpc("erlang", "atom_to_binary", [long_atom]) == \
                ("é" * 200).encode()
            # Python str is sent as an Erlang string (a list of code points)
            assert await conn.rpc("erlang", "length", ["héllo"]) == 5

    run(main())


def test_compressed_terms_both_ways(erl_node: NodeFactory) -> None:
    node = erl_node()
    big = [Atom("x"), b"y" * 1000] * 500

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            packed = await conn.rpc("erlang", "term_to_binary", [big, [Atom("compressed")]])
            assert packed[1] == 80  # the node really compressed it
            assert decode(packed) == big
            assert await conn.rpc("erlang", "binary_to_term",
                                  [encode(big, compressed=True)]) == big

    run(main())


def test_epmd_names_and_port(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        names = await epmd.names("127.0.0.1", port=node.epmd_port)
        assert node.alive in names
        info = await epmd.port_please("127.0.0.1", node.alive, port=node.epmd_port)
        assert info.port == names[node.alive]
        assert info.highest_version >= 6 and not info.hidden

    run(main())


def test_local_host_names_our_side(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port,
                           local_host="agent.example") as conn:
            assert conn.local_name.startswith("beamfleet-")
            assert conn.local_name.endswith("@agent.example")
            assert conn.local_name in await conn.nodes("hidden")

    run(main())


def test_ipv6_node(erl_node: NodeFactory) -> None:
    node = erl_node(host="::1")

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            assert conn.local_name.endswith("@::1")
            assert await conn.rpc("erlang", "node", []) == Atom(node.name)
            assert conn.local_name in await conn.nodes("hidden")

    run(main())


def test_wrong_cookie_is_authentication_failed_fast(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(AuthenticationFailed, match="cookies differ") as info:
            await connect(node.name, "NOT" + node.cookie, epmd_port=node.epmd_port)
        assert time.monotonic() - start < 2.0
        assert node.cookie not in str(info.value)

    run(main())


def test_disallowed_host_is_handshake_rejected(erl_node: NodeFactory) -> None:
    # the node accepts only one named peer, so our random name gets status not_allowed
    node = erl_node(extra_args=["-eval", "net_kernel:allow(['only@10.255.255.1'])."])

    async def main() -> None:
        deadline = time.monotonic() + 10  # -eval runs after the node says it is ready
        while True:
            try:
                conn = await connect(node.name, node.cookie, epmd_port=node.epmd_port)
            except HandshakeRejected as exc:
                assert exc.status == "not_allowed"
                assert "not_allowed" in str(exc)
                return
            await conn.close()
            assert time.monotonic() < deadline, "net_kernel:allow/1 never took effect"
            await asyncio.sleep(0.1)

    run(main())


def test_unknown_node_is_not_registered(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        with pytest.raises(NodeNotRegistered, match="not registered"):
            await connect(f"nosuch{node.alive}@127.0.0.1", node.cookie,
                          epmd_port=node.epmd_port)

    run(main())


def test_epmd_down_is_epmd_unreachable() -> None:
    port = free_port()  # nothing listens there

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(EpmdUnreachable, match=f"127.0.0.1:{port}"):
            await connect("app@127.0.0.1", "cookie", epmd_port=port, timeout=2)
        assert time.monotonic() - start < 2.0

    run(main())


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A TCP socket that listens and never accepts: connects succeed, nothing is said."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def _register(epmd_port: int, alive: str, port: int) -> socket.socket:
    """Register ``alive`` at ``port`` in an EPMD (ALIVE2_REQ); the socket holds it."""
    name = alive.encode()
    body = struct.pack(">BHBBHHH", 120, port, 77, 0, 6, 5, len(name)) + name + b"\0\0"
    sock = socket.create_connection(("127.0.0.1", epmd_port), timeout=5)
    sock.sendall(struct.pack(">H", len(body)) + body)
    answer = sock.recv(16)
    assert answer[:1] in (b"y", b"v") and answer[1] == 0, answer
    return sock


def test_silent_peer_times_out_in_handshake(epmd: Epmd, silent_listener: socket.socket) -> None:
    port = silent_listener.getsockname()[1]
    registration = _register(epmd.port, "silent", port)

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(DistTimeout) as info:
            await connect("silent@127.0.0.1", "cookie", epmd_port=epmd.port, timeout=1.0)
        elapsed = time.monotonic() - start
        assert info.value.step == "handshake"
        assert 1.0 <= elapsed < 2.5

    try:
        run(main())
    finally:
        registration.close()


def test_unanswered_syn_times_out_in_connect_step(epmd: Epmd) -> None:
    # a listener whose accept queue is full: the kernel drops further SYNs, like a
    # black-holed host, so the TCP connect itself hangs
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    registration = _register(epmd.port, "blackholed", port)

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(DistTimeout) as info:
            await connect("blackholed@127.0.0.1", "cookie", epmd_port=epmd.port, timeout=1.0)
        assert info.value.step == "connect"
        assert 1.0 <= time.monotonic() - start < 2.5

    try:
        run(main())
    finally:
        registration.close()
        filler.close()
        full.close()


def test_silent_epmd_times_out_in_epmd_step(silent_listener: socket.socket) -> None:
    port = silent_listener.getsockname()[1]

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(DistTimeout) as info:
            await connect("app@127.0.0.1", "cookie", epmd_port=port, timeout=0.5)
        assert info.value.step == "epmd"
        assert 0.5 <= time.monotonic() - start < 2.0

    run(main())


def test_ticks_keep_an_idle_connection_up(erl_node: NodeFactory) -> None:
    """net_ticktime 4: the node drops a silent peer after 4-5 s; idle 2 x 7.5 s survives."""
    node = erl_node(extra_args=["-kernel", "net_ticktime", "4"])

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            start = time.monotonic()
            while time.monotonic() - start < 15.0:
                # idle (only ticks flow) for longer than net_ticktime, then use it
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(conn.wait_closed(), 7.5)
                assert conn.local_name in await conn.nodes("hidden", timeout=5)
            assert not conn.closed

    run(main())


def test_without_tick_answers_the_node_drops_us(erl_node: NodeFactory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: mute our tick answers and the node hangs up."""
    node = erl_node(extra_args=["-kernel", "net_ticktime", "4"])
    monkeypatch.setattr(dist_connection.NodeConnection, "_on_tick", lambda self: None)

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            await asyncio.wait_for(conn.wait_closed(), 15)
            with pytest.raises(ConnectionLost):
                await conn.rpc("erlang", "node", [])

    run(main())


def test_generic_reply_path(erl_node: NodeFactory) -> None:
    """Replies normally take a byte-prefix fast path; the general decoder must agree."""
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            conn._send_to_us = b"\xff never matches"
            results = await asyncio.gather(*(conn.rpc("erlang", "abs", [-i], timeout=10)
                                             for i in range(50)))
            assert results == list(range(50))
            with pytest.raises(RpcError):
                await conn.rpc("no_such_module", "f", [], timeout=10)

    run(main())


def test_200_concurrent_rpcs(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            calls = []
            expected: list[Any] = []
            for i in range(200):
                if i % 3 == 0:
                    # sleeps of decreasing length make replies come back out of order
                    calls.append(conn.rpc("timer", "sleep", [(200 - i) // 4], timeout=20))
                    expected.append(Atom("ok"))
                else:
                    calls.append(conn.rpc("erlang", "list_to_tuple", [[i, -i]], timeout=20))
                    expected.append((i, -i))
            assert await asyncio.gather(*calls) == expected

    run(main())


def test_one_megabyte_reply(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            blob = await conn.rpc("binary", "copy", [b"0123456789abcdef", 65536], timeout=20)
            assert blob == b"0123456789abcdef" * 65536
            seq = await conn.rpc("lists", "seq", [1, 300_000], timeout=20)
            assert seq == list(range(1, 300_001))
            # and the other way: 64 MB of arguments in flight go through back-pressure
            sizes = await asyncio.gather(*(conn.rpc("erlang", "byte_size", [bytes(1 << 20)],
                                                    timeout=60) for _ in range(64)))
            assert sizes == [1 << 20] * 64

    run(main())


def test_badrpc_raises_rpc_error(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            with pytest.raises(RpcError) as info:
                await conn.rpc("no_such_module", "f", [1])
            assert "undef" in repr(info.value.reason)
            # the connection stays usable after a failed call
            assert await conn.rpc("erlang", "abs", [-3]) == 3

    run(main())


def test_undecodable_reply_fails_only_that_call(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            # #{[1] => 2}: a map keyed by a list has no Python dict form
            with pytest.raises(TermCodecError, match="dict key"):
                await conn.rpc("maps", "from_list", [[([1], 2)]], timeout=5)
            assert await conn.rpc("erlang", "abs", [-5], timeout=5) == 5

    run(main())


def test_rpc_timeout_then_connection_still_usable(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port) as conn:
            start = time.monotonic()
            with pytest.raises(DistTimeout) as info:
                await conn.rpc("timer", "sleep", [3000], timeout=0.3)
            assert info.value.step == "rpc"
            assert time.monotonic() - start < 1.5
            assert await conn.rpc("erlang", "abs", [-4], timeout=5) == 4

    run(main())


def test_wait_closed_when_node_stops(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        conn = await connect(node.name, node.cookie, epmd_port=node.epmd_port)
        pending = asyncio.ensure_future(conn.rpc("timer", "sleep", [60_000]))
        await asyncio.sleep(0)  # let the call go out
        await asyncio.to_thread(node.stop)
        await asyncio.wait_for(conn.wait_closed(), 10)
        assert conn.closed
        with pytest.raises(ConnectionLost):
            await pending

    run(main())


def test_connect_node_nodes_disconnect_node(erl_node: NodeFactory) -> None:
    a = erl_node()
    b = erl_node(cookie=a.cookie)
    other = erl_node()  # a different cookie: connect_node answers false

    async def main() -> None:
        async with connect(a.name, a.cookie, epmd_port=a.epmd_port) as conn:
            assert await conn.connect_node(b.name, timeout=10) is True
            assert b.name in await conn.nodes()
            assert await conn.connect_node(other.name, timeout=10) is False
            assert await conn.disconnect_node(b.name) is True
            assert b.name not in await conn.nodes()
            with pytest.raises(ValueError, match="kind"):
                await conn.nodes("bogus")

    run(main())


def test_close_is_clean(erl_node: NodeFactory) -> None:
    node = erl_node()

    async def main() -> None:
        conn = await connect(node.name, node.cookie, epmd_port=node.epmd_port)
        name = conn.local_name
        await conn.close()
        await asyncio.wait_for(conn.wait_closed(), 1)
        # another identity: with ours the probe could reuse the closed connection's name
        async with connect(node.name, node.cookie, epmd_port=node.epmd_port,
                           identity="probe") as probe:
            assert probe.local_name != name
            deadline = time.monotonic() + 10
            while name in await probe.nodes("hidden"):
                assert time.monotonic() < deadline, "closed connection still listed"
                await asyncio.sleep(0.05)

    run(main())
