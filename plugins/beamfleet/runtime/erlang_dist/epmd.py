"""EPMD client: look up a node's distribution port (PORT_PLEASE2) and list names (NAMES).

EPMD answers one request per TCP connection; integers are big-endian.

Example::

    node = await epmd.port_please("10.0.1.3", "app")   # EpmdNode(port=..., ...)
    names = await epmd.names("127.0.0.1")              # {"app": 40123, ...}
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from beamfleet.runtime.erlang_dist.errors import (
    DistTimeout,
    EpmdReplyTooLarge,
    EpmdUnreachable,
    NodeNotRegistered,
)

EPMD_PORT = 4369

# Longest answer we read: a PORT2_RESP is at most ~128 KiB (two u16-sized strings);
# a NAMES list holds ~40 bytes per node, so 1 MiB is some 25,000 nodes on one host.
MAX_REPLY = 1024 * 1024

PORT_PLEASE2_REQ = 122
PORT2_RESP = 119
NAMES_REQ = 110

NODE_TYPE_NORMAL = 77
NODE_TYPE_HIDDEN = 72


@dataclass(frozen=True, slots=True)
class EpmdNode:
    """A node as registered in EPMD (the PORT2_RESP fields)."""

    name: str
    port: int
    node_type: int
    protocol: int
    highest_version: int
    lowest_version: int
    extra: bytes = b""

    @property
    def hidden(self) -> bool:
        return self.node_type == NODE_TYPE_HIDDEN


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


async def _read_bounded(reader: asyncio.StreamReader, host: str, port: int) -> bytes:
    """Everything until EOF, refusing more than :data:`MAX_REPLY` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > MAX_REPLY:
            raise EpmdReplyTooLarge(host, port, MAX_REPLY)
        chunks.append(chunk)
    return b"".join(chunks)


async def _request(host: str, body: bytes, *, port: int, timeout: float) -> bytes:
    """Send one request, read until EPMD closes; map failures to the module's errors.

    Raises:
        EpmdReplyTooLarge: more than :data:`MAX_REPLY` bytes came back.
    """
    host = _strip_brackets(host)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError as exc:
        raise DistTimeout("epmd", timeout, f"{host}:{port}") from exc
    except OSError as exc:
        raise EpmdUnreachable(host, port, exc.strerror or str(exc)) from exc
    try:
        writer.write(struct.pack(">H", len(body)) + body)
        try:
            return await asyncio.wait_for(_read_bounded(reader, host, port), timeout)
        except TimeoutError as exc:
            raise DistTimeout("epmd", timeout, f"{host}:{port}") from exc
        except OSError as exc:
            raise EpmdUnreachable(host, port, exc.strerror or str(exc)) from exc
    finally:
        writer.close()


async def port_please(host: str, alive: str, *, port: int = EPMD_PORT,
                      timeout: float = 2.0) -> EpmdNode:
    """Ask the EPMD on ``host`` where node ``alive`` (the part before ``@``) listens.

    Raises:
        EpmdUnreachable: nothing accepted on ``host:port`` or a garbled answer.
        NodeNotRegistered: EPMD has no node called ``alive``.
        DistTimeout: ``step == "epmd"`` when EPMD did not answer within ``timeout``.
    """
    raw = await _request(host, bytes([PORT_PLEASE2_REQ]) + alive.encode("utf-8"),
                         port=port, timeout=timeout)
    node = f"{alive}@{_strip_brackets(host)}"
    if len(raw) < 2 or raw[0] != PORT2_RESP:
        if not raw:
            # EPMD closes without a word when it does not know the name (old epmd) —
            # and some refuse-nothing listeners do the same; both mean "no such node".
            raise NodeNotRegistered(node)
        raise EpmdUnreachable(host, port, "unexpected answer; is that really EPMD?")
    if raw[1] != 0:
        raise NodeNotRegistered(node)
    try:
        node_port, node_type, protocol, highest, lowest, nlen = struct.unpack_from(
            ">HBBHHH", raw, 2)
        name = raw[12:12 + nlen].decode("utf-8")
        pos = 12 + nlen
        (elen,) = struct.unpack_from(">H", raw, pos) if len(raw) >= pos + 2 else (0,)
        extra = raw[pos + 2:pos + 2 + elen]
    except (struct.error, UnicodeDecodeError) as exc:
        raise EpmdUnreachable(host, port, f"malformed PORT2_RESP ({exc})") from exc
    return EpmdNode(name, node_port, node_type, protocol, highest, lowest, extra)


async def names(host: str, *, port: int = EPMD_PORT, timeout: float = 2.0) -> dict[str, int]:
    """All names registered at the EPMD on ``host``, with their distribution ports.

    Raises:
        EpmdUnreachable, DistTimeout: as :func:`port_please`.
    """
    raw = await _request(host, bytes([NAMES_REQ]), port=port, timeout=timeout)
    if len(raw) < 4:
        raise EpmdUnreachable(host, port, "short NAMES answer; is that really EPMD?")
    result: dict[str, int] = {}
    for line in raw[4:].decode("utf-8", "replace").splitlines():
        # "name NAME at port PORT"
        parts = line.split(" ")
        if len(parts) == 5 and parts[0] == "name" and parts[2] == "at" and parts[3] == "port":
            try:
                result[parts[1]] = int(parts[4])
            except ValueError:
                continue
    return result
