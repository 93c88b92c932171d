"""Hostile Erlang distribution peers on 127.0.0.1, for the adversarial tests and the
hostile-peers benchmark.

A fake node is an asyncio server that reads the client's name, then runs a *script*
that may lie, flood or stall; a fake EPMD in front of it points every lookup at it::

    async def refuse(reader, writer, peer):
        await up_to_reply(reader, writer, peer)  # then hang up: wrong digest

    async with fake_node(refuse) as fake:
        await connect(FAKE, "COOKIE", epmd_port=fake.epmd_port)  # AuthenticationFailed

Building blocks for scripts: :func:`challenge_msg`, :func:`up_to_reply`,
:func:`drain_rest`, :func:`authenticated` (a node that knows the cookie), :func:`frame32`
(a post-handshake frame) and :func:`compression_bomb` (a small term that inflates to
millions of list cells). :func:`rss_kib` reads this process's resident set size.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from beamfleet.runtime.erlang_dist import etf, handshake

FAKE = "fake@127.0.0.1"
"""The name every fake node answers to (with the default ``alive``)."""


def rss_kib() -> int:
    """This process's resident set size in KiB (VmRSS from /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@asynccontextmanager
async def fake_epmd(node_port: int, *, alive: str = "fake") -> AsyncIterator[int]:
    """An EPMD that answers every PORT_PLEASE2 with ``node_port``; yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (n,) = struct.unpack(">H", await reader.readexactly(2))
        await reader.readexactly(n)
        name = alive.encode()
        writer.write(
            bytes([119, 0])
            + struct.pack(">HBBHHH", node_port, 77, 0, 6, 5, len(name))
            + name
            + b"\0\0"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@dataclass
class Peer:
    """What the fake node saw of one client connection."""

    name: str = ""
    challenge: int = 0
    after_reply: bytearray = field(default_factory=bytearray)
    # set once the client closed and everything it sent has been read
    finished: asyncio.Event = field(default_factory=asyncio.Event)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Peer], Awaitable[None]]
"""What a fake node does with one connection once it has read the client's name."""


@dataclass
class FakeNode:
    """A running fake node: its listen port, its EPMD's port, the clients it saw."""

    port: int
    epmd_port: int
    peers: list[Peer]


@asynccontextmanager
async def fake_node(script: Script, *, alive: str = "fake") -> AsyncIterator[FakeNode]:
    """A distribution listener that runs ``script`` after reading the client's name."""
    peers: list[Peer] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer()
        peers.append(peer)
        try:
            body = await read16(reader)
            peer.name = body[15:].decode()
            await script(reader, writer, peer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            peer.finished.set()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with fake_epmd(port, alive=alive) as epmd_port:
            yield FakeNode(port, epmd_port, peers)


async def read16(reader: asyncio.StreamReader) -> bytes:
    """One handshake message (2-byte length prefix), without its length."""
    (n,) = struct.unpack(">H", await reader.readexactly(2))
    return await reader.readexactly(n)


def challenge_msg(name: str, challenge: int) -> bytes:
    """A v6 ``N`` challenge from node ``name``, framed for the handshake."""
    raw = name.encode()
    body = (
        b"N"
        + struct.pack(">QIIH", handshake.OUR_FLAGS | handshake.PUBLISHED, challenge, 1, len(raw))
        + raw
    )
    return handshake.frame16(body)


async def up_to_reply(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer, *, name: str = FAKE
) -> bytes:
    """Status ok, our challenge; returns the client's 'r' reply."""
    writer.write(handshake.frame16(b"sok") + challenge_msg(name, 42))
    reply = await read16(reader)
    assert reply[:1] == b"r"
    peer.challenge = struct.unpack(">I", reply[1:5])[0]
    return reply


async def drain_rest(reader: asyncio.StreamReader, peer: Peer) -> None:
    """Keep whatever the client still sends, until it closes."""
    while chunk := await reader.read(65536):
        peer.after_reply += chunk


def frame32(body: bytes) -> bytes:
    """A post-handshake frame: 4-byte length prefix, then ``body``."""
    return struct.pack(">I", len(body)) + body


def compression_bomb(cells: int) -> bytes:
    """An external term (``131, 80, ...``) that inflates to a list of ``cells`` small
    integers: about 2 KB per million cells on the wire, 2 bytes a cell once inflated."""
    body = struct.pack(">BI", etf.LIST, cells) + b"\x61\x00" * cells + b"\x6a"
    return struct.pack(">BBI", 131, etf.COMPRESSED, len(body)) + zlib.compress(body, 9)


def authenticated(cookie: str, then: Script) -> Script:
    """A node that knows ``cookie``: completes the handshake, then runs ``then``."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        reply = await up_to_reply(reader, writer, peer)
        assert reply[5:] == handshake.digest(cookie, 42)
        writer.write(handshake.frame16(b"a" + handshake.digest(cookie, peer.challenge)))
        await then(reader, writer, peer)

    return script
