"""A hidden-node connection to one BEAM node: handshake, framing, ticks, RPC.

Example::

    async with connect("app@10.0.1.3", cookie) as node:
        await node.rpc("erlang", "node", [])          # Atom('app@10.0.1.3')
        await node.connect_node("app@10.0.1.4")       # True
        await node.nodes("connected")                 # ['app@10.0.1.4', ...]

One asyncio Protocol per connection parses frames straight from the socket buffer, so
many RPCs in flight cost one small dict entry each; replies are matched to their
futures by the reference we put in each ``$gen_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import ipaddress
import itertools
import os
import secrets
import socket
import ssl
import struct
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from beamfleet.runtime.erlang_dist import epmd, handshake
from beamfleet.runtime.erlang_dist.errors import (
    AuthenticationFailed,
    ConnectionLost,
    DistError,
    DistProtocolMismatch,
    DistTimeout,
    FrameTooLarge,
    HandshakeRejected,
    LocalNamesExhausted,
    RpcError,
    TlsHandshakeFailed,
    UnexpectedNode,
)
from beamfleet.runtime.erlang_dist.etf import (
    Atom,
    Pid,
    Reference,
    decode_body_from,
    decode_from,
    encode,
    encode_body,
)
from beamfleet.runtime.erlang_dist.tls import OPTIONS_HINT, TlsConfig, client_context
from beamfleet.runtime.node_names import InvalidNodeNameError, split_node_name

# control message codes (erl_dist_protocol)
SEND = 2
REG_SEND = 6
SEND_TT = 12
SEND_SENDER = 22
SEND_SENDER_TT = 23
UNLINK_ID = 35
UNLINK_ID_ACK = 36

NODE_KINDS = ("visible", "hidden", "connected", "known", "this")

TICK = b"\x00\x00\x00\x00"
# We send a tick when we have sent nothing for this long (the default net_ticktime is
# 60 s; peers with a lower one tick more often, and we answer each of their ticks).
KEEPALIVE_INTERVAL = 15.0
# Nothing at all received for this long: probe the peer with an RPC (default net_ticktime
# 60 s makes a healthy peer tick every 15 s; one with a much larger net_ticktime answers
# the probe) and drop the connection when that fails too.
IDLE_LIMIT = 75.0
PROBE_TIMEOUT = 10.0

# Largest frame we accept once connected (RPC replies of a control plane are far smaller;
# the u32 length would otherwise let a peer make us buffer up to 4 GiB).
MAX_FRAME = 8 * 1024 * 1024
# What we buffer during the handshake: its three u16 messages, plus a little of what
# follows the ack (kept unparsed until the ack's digest is verified).
HANDSHAKE_BUFFER_LIMIT = 4 * 65537
# Local node names per identity: a node turns every name that connects into an atom it
# never frees, so we reuse a fixed pool (one name per concurrent connection to a node).
NAME_POOL_SIZE = 16
# After an authentication failure or a rejected handshake, attempts on the same target
# fail fast for this long, doubling on each further failure up to the maximum.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0

_ATOM_EMPTY = Atom("")
_ATOM_REX = Atom("rex")
_ATOM_GEN_CALL = Atom("$gen_call")
_ATOM_CALL = Atom("call")
_ATOM_USER = Atom("user")
_ATOM_BADRPC = Atom("badrpc")

_u32 = struct.Struct(">I")
_three_words = struct.Struct(">III").pack


def _encode_args(args: list[Any] | tuple[Any, ...]) -> bytes:
    return encode_body(list(args)) if args else b"\x6a"


class InvalidNodeName(DistError, ValueError):
    """A node name is not ``alive@host``."""

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(f"invalid node name {node!r}: expected NAME@HOST, "
                         f"e.g. app@10.0.1.3 or app@::1")


def split_node(node: str) -> tuple[str, str]:
    """``"alive@host"`` -> ``("alive", "host")``; the host may be an IPv6 literal.

    The rules are :mod:`beamfleet.runtime.node_names` (what naming and discovery accept).
    """
    try:
        return split_node_name(node)
    except InvalidNodeNameError as exc:
        raise InvalidNodeName(node) from exc


def _format_host(host: str) -> str:
    """Host part for our own node name: IPv6 scope ids are not valid in node names."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    return host


class _DistProtocol(asyncio.Protocol):
    """Frames: u16-length during the handshake (u32 in TLS), u32 after; dispatches messages.

    OTP's TLS distribution runs the handshake on a socket in ``{packet, 4}`` mode, so
    inside TLS each handshake message carries a 4-byte length (2 bytes over plain TCP).
    """

    def __init__(self, conn: NodeConnection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        # until the ack's digest is verified, received bytes are only buffered, and
        # read_hs takes the handshake messages out one by one as they are needed
        self.handshake_mode = True
        self.hs_error: DistError | None = None
        self.hs_waiter: asyncio.Future[None] | None = None
        self.eof = False
        # why the transport closed (a TLS alert from the node arrives as an SSLError)
        self.lost_exc: Exception | None = None
        # bytes of the length before each handshake message: 2, or 4 inside TLS
        self.hs_length_size = 2

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.conn.closed:
            return
        self.conn._last_rx = self.conn._loop.time()
        if self.handshake_mode:
            self._buffer_handshake(data)
            return
        if not self.buf:
            # common case: parse straight from the received bytes, keep only a tail
            used = self._parse_frames(data)
            if used < len(data) and not self.conn.closed:
                self.buf += data[used:]
            return
        buf = self.buf
        buf += data
        used = self._parse_frames(buf)
        if used:
            del buf[:used]

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def pause_writing(self) -> None:
        self.conn._can_write.clear()

    def resume_writing(self) -> None:
        self.conn._can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost_exc = exc
        self._wake()
        self.conn._lost(str(exc) if exc else "closed by the peer")

    # -- handshake phase
    def _wake(self) -> None:
        if self.hs_waiter is not None and not self.hs_waiter.done():
            self.hs_waiter.set_result(None)

    def _buffer_handshake(self, data: bytes) -> None:
        if self.hs_error is not None:
            return  # closing; keep nothing more
        self.buf += data
        if len(self.buf) > HANDSHAKE_BUFFER_LIMIT:
            # an honest node sends three short messages and waits for us
            self.hs_error = HandshakeRejected(
                self.conn.node, f"the node sent over {HANDSHAKE_BUFFER_LIMIT:,} bytes "
                                f"during the handshake")
            self.buf.clear()
            if self.transport is not None:
                self.transport.close()
        self._wake()

    def frame_hs(self, body: bytes) -> bytes:
        """``body`` with the length prefix of a handshake message."""
        if self.hs_length_size == 4:
            return _u32.pack(len(body)) + body
        return handshake.frame16(body)

    def _next_hs(self) -> bytes | None:
        """Take one complete framed handshake message off the buffer, if there is one."""
        buf = self.buf
        size = self.hs_length_size
        if len(buf) < size:
            return None
        n = int.from_bytes(buf[:size], "big")
        if n > HANDSHAKE_BUFFER_LIMIT:
            # only a u32 length can say this; an honest node's messages are short
            self.hs_error = HandshakeRejected(
                self.conn.node, f"the node announced a handshake message of {n:,} bytes")
            return None
        if len(buf) < size + n:
            return None
        msg = bytes(buf[size:size + n])
        del buf[:size + n]
        return msg

    async def read_hs(self) -> bytes | None:
        """Next handshake message, or None at EOF.

        Only the message asked for is parsed: whatever follows the ack ('a') stays in the
        buffer until :func:`_handshake` has checked the ack's digest.
        """
        while True:
            if self.hs_error is not None:
                raise self.hs_error
            msg = self._next_hs()
            if msg is not None:
                return msg
            if self.eof:
                return None
            self.hs_waiter = self.conn._loop.create_future()
            await self.hs_waiter

    # -- connected phase
    def _parse_frames(self, buf: bytes | bytearray) -> int:
        """Dispatch every complete u32 frame in ``buf``; return the bytes consumed."""
        pos = 0
        end = len(buf)
        conn = self.conn
        while end - pos >= 4:
            (n,) = _u32.unpack_from(buf, pos)
            if n > MAX_FRAME:
                conn._lost_to(FrameTooLarge(conn.node, n, MAX_FRAME))
                return end
            if end - pos - 4 < n:
                break
            if n == 0:
                conn._on_tick()
            else:
                conn._on_frame(bytes(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        return pos


class NodeConnection:
    """A live connection to one node as a hidden node. Create it with :func:`connect`."""

    def __init__(self, node: str, local_name: str, creation: int) -> None:
        self.node = node
        self.local_name = local_name
        self._creation = creation
        self._loop = asyncio.get_running_loop()
        self._pending: dict[bytes, asyncio.Future[Any]] = {}
        self._ref_counter = itertools.count(1)
        self._ref_salt = secrets.randbits(32)
        self._closed = self._loop.create_future()
        self._close_reason = ""
        self._protocol: _DistProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._last_rx = self._loop.time()
        self._last_tx = self._loop.time()
        self._keepalive: asyncio.Task[None] | None = None
        self._peer_flags = 0
        self._atoms: dict[str, bytes] = {}
        # the name the node gave in its challenge (the host part as it sees itself)
        self.peer_name = ""
        # frees our local name for another connection once this one is gone
        self._release_name: Callable[[], None] | None = None
        # cleared while the transport's write buffer is over its high-water mark
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._set_identity(local_name)

    def _set_identity(self, local_name: str) -> None:
        """Our name and pid, and the fixed byte strings of every RPC built from them."""
        self.local_name = local_name
        self._self_pid = Pid(Atom(local_name), 1, 0, self._creation)
        pid = encode_body(self._self_pid)
        # the REG_SEND control message of every call to rex
        self._reg_send_rex = b"p" + encode((REG_SEND, self._self_pid, _ATOM_EMPTY, _ATOM_REX))
        # {'$gen_call', {SelfPid, _ ...
        self._gen_call_head = (b"\x83\x68\x03" + encode_body(_ATOM_GEN_CALL) + b"\x68\x02"
                               + pid)
        # ... {call, _ ...
        self._call_head = b"\x68\x05" + encode_body(_ATOM_CALL)
        self._user = encode_body(_ATOM_USER)
        # how the node addresses a reply to us: 'p' + {SEND, '', SelfPid}, then {Ref, _}
        self._send_to_us = b"p" + encode((SEND, _ATOM_EMPTY, self._self_pid)) + b"\x83\x68\x02"
        self._ref_head = struct.pack(">BH", 90, 3) + encode_body(self._self_pid.node) \
            + struct.pack(">I", self._creation)

    def _atom(self, name: str) -> bytes:
        raw = self._atoms.get(name)
        if raw is None:
            raw = encode_body(Atom(name))
            if len(self._atoms) < 1000:
                self._atoms[name] = raw
        return raw

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<NodeConnection {self.local_name} -> {self.node} ({state})>"

    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def tls_version(self) -> str | None:
        """The TLS version under the connection (``"TLSv1.3"``), None when plain TCP."""
        if self._transport is None:
            return None
        ssl_object = self._transport.get_extra_info("ssl_object")
        return None if ssl_object is None else str(ssl_object.version())

    @property
    def peer_cert_not_after(self) -> float | None:
        """When the node's TLS certificate expires (epoch seconds); None on plain TCP."""
        if self._transport is None:
            return None
        ssl_object = self._transport.get_extra_info("ssl_object")
        cert = None if ssl_object is None else ssl_object.getpeercert()
        if not cert or "notAfter" not in cert:
            return None
        return float(ssl.cert_time_to_seconds(str(cert["notAfter"])))

    @property
    def peer_flags(self) -> int:
        """Capability flags the peer announced in the handshake."""
        return self._peer_flags

    # -- lifecycle
    async def __aenter__(self) -> NodeConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; pending RPCs fail with :class:`ConnectionLost`."""
        if self._transport is not None:
            self._transport.close()
        self._lost("closed by us")

    async def wait_closed(self) -> None:
        """Return once the connection is gone (peer closed, tick timeout, or close())."""
        await asyncio.shield(self._closed)

    def _lost_to(self, error: ConnectionLost) -> None:
        """Close because of ``error``: pending calls fail with it."""
        self._lost(error.reason, error)

    def _lost(self, reason: str, error: ConnectionLost | None = None) -> None:
        if self._closed.done():
            return
        if self._release_name is not None:
            self._release_name()
            self._release_name = None
        self._close_reason = reason
        self._closed.set_result(None)
        self._can_write.set()  # writers waiting for room find the connection closed
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._transport is not None:
            self._transport.close()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error or ConnectionLost(self.node, reason))

    # -- I/O
    def _send_frame(self, *parts: bytes) -> None:
        if self._transport is None or self.closed:
            raise ConnectionLost(self.node, self._close_reason or "not connected")
        self._transport.write(b"".join((_u32.pack(sum(map(len, parts))), *parts)))
        self._last_tx = self._loop.time()

    def _on_tick(self) -> None:
        # answering every tick keeps us alive whatever the peer's net_ticktime is
        if self._transport is not None and not self.closed:
            self._transport.write(TICK)
            self._last_tx = self._loop.time()

    def _on_frame(self, frame: bytes) -> None:
        head = self._send_to_us
        if frame.startswith(head):
            # fast path for RPC replies: the control message and the reference are the
            # bytes we expect; look the call up by its encoded reference, decode the result
            end = len(head) + len(self._ref_head) + 12
            fut = self._pending.pop(frame[len(head):end], None)
            if fut is not None:
                try:
                    result, _ = decode_body_from(frame, end)
                except DistError as exc:
                    if not fut.done():
                        fut.set_exception(exc)
                else:
                    if not fut.done():
                        fut.set_result(result)
                return
        if frame[0] != 112:  # 'p' is the only message type without atom cache/fragments
            return
        try:
            control, pos = decode_from(frame, 1)
            if type(control) is not tuple or not control:
                return
            op = control[0]
            if op in (SEND, SEND_TT, SEND_SENDER, SEND_SENDER_TT):
                self._deliver(frame, pos)
            elif op == UNLINK_ID and len(control) == 4:
                _, ident, from_pid, to_pid = control
                self._send_frame(b"p" + encode((UNLINK_ID_ACK, ident, to_pid, from_pid)))
            # LINK, EXIT, MONITOR_P, GROUP_LEADER, ...: nothing of ours to link or monitor
        except DistError:
            # framing is intact, so one message we cannot decode (e.g. a map keyed by
            # lists) costs only that message; RPC replies take the fast path above and
            # fail their own call instead
            return

    def _deliver(self, frame: bytes, pos: int) -> None:
        message, _ = decode_from(frame, pos)
        if type(message) is tuple and len(message) == 2 and type(message[0]) is Reference:
            fut = self._pending.pop(encode_body(message[0]), None)
            if fut is not None and not fut.done():
                fut.set_result(message[1])

    async def _keepalive_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(KEEPALIVE_INTERVAL / 3)
            now = self._loop.time()
            if now - self._last_rx > IDLE_LIMIT:
                try:
                    await self.rpc("erlang", "node", [], timeout=PROBE_TIMEOUT)
                except DistError:
                    self._lost(f"nothing received for {IDLE_LIMIT:g} s and no answer to a "
                               f"probe (tick timeout)")
                    return
                continue
            if now - self._last_tx >= KEEPALIVE_INTERVAL and self._transport is not None:
                self._transport.write(TICK)
                self._last_tx = now

    # -- RPC
    def _new_ref(self) -> bytes:
        """A fresh reference, encoded (NEWER_REFERENCE with three words)."""
        n = next(self._ref_counter)
        # first word limited to 18 bits, as the runtime makes them
        return self._ref_head + _three_words(n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF,
                                             self._ref_salt)

    async def rpc(self, module: str, function: str, args: list[Any] | tuple[Any, ...] = (),
                  *, timeout: float | None = None) -> Any:
        """Call ``module:function(*args)`` on the node via ``rex`` and return the result.

        Args:
            module, function: names, sent as atoms.
            args: a list of terms (see :mod:`beamfleet.runtime.erlang_dist.etf` for the mapping).
            timeout: seconds to wait for the reply; None waits until the connection ends.

        Example::

            await conn.rpc("erlang", "system_info", [Atom("otp_release")])  # [50, 53]

        Raises:
            RpcError: the node answered ``{badrpc, Reason}`` (e.g. undef, an exception).
            DistTimeout: ``step == "rpc"`` when no reply came within ``timeout``.
            ConnectionLost: the connection closed before the reply.
        """
        if self.closed:
            raise ConnectionLost(self.node, self._close_reason)
        ref = self._new_ref()
        # {'$gen_call', {SelfPid, Ref}, {call, Mod, Fun, Args, user}}, spliced from
        # pre-encoded parts: this is the hot path of every call
        parts = (self._reg_send_rex, self._gen_call_head, ref, self._call_head,
                 self._atom(module), self._atom(function), _encode_args(args), self._user)
        if not self._can_write.is_set():
            # back-pressure: the peer reads slower than we send; counts in the timeout
            start = self._loop.time()
            try:
                await asyncio.wait_for(self._can_write.wait(), timeout)
            except TimeoutError as exc:
                raise DistTimeout("rpc", timeout or 0, f"{self.node} {module}:{function}") \
                    from exc
            if timeout is not None:
                timeout = max(0.0, timeout - (self._loop.time() - start))
            if self.closed:
                raise ConnectionLost(self.node, self._close_reason)
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._pending[ref] = fut
        try:
            self._send_frame(*parts)
            if timeout is None:
                result = await fut
            else:
                try:
                    result = await asyncio.wait_for(fut, timeout)
                except TimeoutError as exc:
                    raise DistTimeout("rpc", timeout, f"{self.node} {module}:{function}") \
                        from exc
        finally:
            self._pending.pop(ref, None)
        if type(result) is tuple and len(result) == 2 and result[0] == _ATOM_BADRPC:
            raise RpcError(result[1], call=f"{module}:{function}/{len(args)} on {self.node}")
        return result

    async def nodes(self, kind: str = "visible", *, timeout: float | None = 10.0) -> list[str]:
        """``erlang:nodes(Kind)`` on the node, as plain strings.

        Args:
            kind: visible (default), hidden, connected, known or this.
        """
        if kind not in NODE_KINDS:
            raise ValueError(f"unknown node kind {kind!r}; use one of {', '.join(NODE_KINDS)}")
        result = await self.rpc("erlang", "nodes", [Atom(kind)], timeout=timeout)
        return [str(n) for n in result]

    async def connect_node(self, peer: str, *, timeout: float | None = None) -> bool:
        """``net_kernel:connect_node(Peer)`` on the node: True when connected.

        ``ignored`` (the node is not distributed) and ``false`` give False.
        """
        split_node(peer)
        result = await self.rpc("net_kernel", "connect_node", [Atom(peer)], timeout=timeout)
        return bool(result == "true")

    async def disconnect_node(self, peer: str, *, timeout: float | None = 10.0) -> bool:
        """``erlang:disconnect_node(Peer)`` on the node: True when it was disconnected."""
        split_node(peer)
        result = await self.rpc("erlang", "disconnect_node", [Atom(peer)], timeout=timeout)
        return bool(result == "true")


def default_identity() -> str:
    """Who connects when the caller names no identity: the local user."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (e.g. a bare container uid)
        return f"uid{os.getuid()}"


def name_base(identity: str | None = None) -> str:
    """The alive part our local names start with: ``beamfleet-<hash>``.

    Stable for one identity on one host, so repeated connections reuse the same few
    names (and the same few atoms on the node); ``-<index>`` of the pool follows.

    Example::

        name_base("agent")   # 'beamfleet-3f1c0a9e' on this host, every time
    """
    who = identity if identity is not None else default_identity()
    digest = hashlib.sha256(f"{who}\0{socket.gethostname()}".encode()).hexdigest()
    return f"beamfleet-{digest[:8]}"


class _NamePool:
    """Which indexes of each identity's names are in use towards each node, in-process."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, str], set[int]] = {}

    def claim(self, node: str, base: str, skip: set[int]) -> int | None:
        """The lowest free index not in ``skip``, now marked used; None if none is left."""
        used = self._used.setdefault((node, base), set())
        for index in range(NAME_POOL_SIZE):
            if index not in used and index not in skip:
                used.add(index)
                return index
        return None

    def release(self, node: str, base: str, index: int) -> None:
        used = self._used.get((node, base))
        if used is not None:
            used.discard(index)
            if not used:
                del self._used[(node, base)]


class _Backoff:
    """Targets that just failed authentication or rejected us, and until when to wait.

    Keys are (node, what failed): an authentication failure is remembered per cookie
    (by a hash; another cookie may well be right), a rejection per node.
    """

    def __init__(self) -> None:
        # until, delay, what the failure said (e.g. the rejecting status)
        self._entries: dict[tuple[str, str], tuple[float, float, str]] = {}

    def remaining(self, key: tuple[str, str]) -> float:
        entry = self._entries.get(key)
        return max(0.0, entry[0] - time.monotonic()) if entry else 0.0

    def detail(self, key: tuple[str, str]) -> str:
        entry = self._entries.get(key)
        return entry[2] if entry else ""

    def failed(self, key: tuple[str, str], detail: str = "") -> None:
        now = time.monotonic()
        if len(self._entries) > 4096:  # forget expired entries of old targets
            self._entries = {k: v for k, v in self._entries.items()
                             if v[0] + v[1] > now}
        prev = self._entries.get(key)
        # a failure soon after the last backoff ran out doubles it; a later one restarts
        delay = (min(prev[1] * 2, BACKOFF_MAX) if prev and now < prev[0] + prev[1]
                 else BACKOFF_FIRST)
        self._entries[key] = (now + delay, delay, detail)

    def succeeded(self, *keys: tuple[str, str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


_names = _NamePool()
backoff = _Backoff()


def _auth_key(node: str, cookie: str) -> tuple[str, str]:
    # a hash, so the table never holds the cookie itself
    return node, "auth:" + hashlib.sha256(cookie.encode()).hexdigest()[:16]


def _check_backoff(node: str, cookie: str) -> None:
    """Fail fast, with the error of the last attempt, while its backoff runs."""
    wait = backoff.remaining(_auth_key(node, cookie))
    if wait:
        raise AuthenticationFailed(node, retry_after=wait)
    wait = backoff.remaining((node, "rejected"))
    if wait:
        raise HandshakeRejected(node, backoff.detail((node, "rejected")), retry_after=wait)


class _NameTaken(Exception):
    """The node has (or is setting up) a connection with this local name: try another."""


async def _open(node: str, cookie: str, *, timeout: float, epmd_port: int,
                local_host: str | None, identity: str | None,
                tls: TlsConfig | ssl.SSLContext | None) -> NodeConnection:
    if not cookie:
        raise ValueError("the cookie is empty")
    context = client_context(tls) if tls is not None else None
    alive, host = split_node(node)
    _check_backoff(node, cookie)
    info = await epmd.port_please(host, alive, port=epmd_port, timeout=timeout)
    if info.highest_version < 6:
        raise HandshakeRejected(node, f"distribution version {info.highest_version} "
                                      f"(need 6, OTP 23+)")
    base = name_base(identity)
    taken: set[int] = set()
    while True:
        index = _names.claim(node, base, taken)
        if index is None:
            raise LocalNamesExhausted(node, NAME_POOL_SIZE)

        def release(index: int = index) -> None:
            _names.release(node, base, index)

        try:
            conn = await _attempt(node, alive, host, info.port, cookie, timeout=timeout,
                                  local_alive=f"{base}-{index}", local_host=local_host,
                                  context=context)
        except _NameTaken:
            release()
            taken.add(index)
            continue
        except AuthenticationFailed:
            release()
            backoff.failed(_auth_key(node, cookie))
            raise
        except UnexpectedNode:
            release()
            raise
        except HandshakeRejected as exc:
            release()
            backoff.failed((node, "rejected"), exc.status)
            raise
        except BaseException:
            release()
            raise
        backoff.succeeded(_auth_key(node, cookie), (node, "rejected"))
        conn._release_name = release
        if conn.closed:  # lost already (e.g. an oversized first frame)
            release()
        return conn


async def _attempt(node: str, alive: str, host: str, port: int, cookie: str, *,
                   timeout: float, local_alive: str, local_host: str | None,
                   context: ssl.SSLContext | None) -> NodeConnection:
    """One TCP connection (in TLS with ``context``) and handshake as ``local_alive``."""
    loop = asyncio.get_running_loop()
    conn: NodeConnection | None = None

    def factory() -> _DistProtocol:
        nonlocal conn
        creation = handshake.new_creation()
        conn = NodeConnection(node, "", creation)
        conn._protocol = _DistProtocol(conn)
        return conn._protocol

    try:
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(factory, host, port), timeout)
    except TimeoutError as exc:
        raise DistTimeout("connect", timeout, f"{node} ({host}:{port})") from exc
    except OSError as exc:
        raise ConnectionLost(node, f"cannot connect to {host}:{port}: "
                                   f"{exc.strerror or exc}") from exc
    assert conn is not None
    # taken now: a node that refuses our certificate may have closed by the time TLS is up
    sock_host = str(transport.get_extra_info("sockname")[0])
    if context is not None:
        transport = await _start_tls(transport, conn._protocol, context, node=node,
                                     host=host, timeout=timeout)
        assert conn._protocol is not None
        # the protocol now reads and writes through the TLS transport
        conn._protocol.transport = transport
        conn._protocol.hs_length_size = 4
    conn._transport = transport
    conn._set_identity(f"{local_alive}@{_format_host(local_host or sock_host)}")
    try:
        await asyncio.wait_for(_handshake(conn, protocol, cookie, alive), timeout)
    except TimeoutError as exc:
        transport.close()
        raise DistTimeout("handshake", timeout, node) from exc
    except BaseException:
        transport.close()
        raise
    conn._last_rx = conn._last_tx = loop.time()
    conn._keepalive = loop.create_task(conn._keepalive_loop())
    # frames that arrived together with (or just after) the ack, now that it is verified
    if protocol.buf:
        used = protocol._parse_frames(protocol.buf)
        del protocol.buf[:used]
    return conn


# What the node's TLS alert means when it refuses us. In TLS 1.3 the node checks our
# certificate after our side of the handshake has finished, so its refusal arrives as an
# alert on our first read (the distribution handshake's status), not from start_tls.
_NODE_REFUSED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        "the node requires a client certificate and we presented none; " + OPTIONS_HINT,
    "TLSV1_ALERT_UNKNOWN_CA":
        "the node rejected our certificate (unknown CA): it is not signed by a CA the "
        "node trusts (the cacertfile of its -ssl_dist_optfile); give a --tls-cert issued "
        "by the cluster's CA",
    "SSLV3_ALERT_BAD_CERTIFICATE":
        "the node rejected our certificate (bad certificate): check that --tls-cert is "
        "issued by the cluster's CA for client use",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED":
        "the node rejected our certificate: it has expired; renew --tls-cert",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN":
        "the node rejected our certificate (certificate unknown): check --tls-cert",
    "TLSV1_ALERT_PROTOCOL_VERSION":
        "the node does not accept TLS 1.3 (check versions in its -ssl_dist_optfile)",
}
# What OpenSSL reports when the other side answers something that is not TLS.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")
_NOT_TLS_REASON = "the node does not speak TLS distribution (connect without --tls-*)"


def _tls_failure(node: str, exc: BaseException) -> TlsHandshakeFailed:
    """The error of a failed TLS step, saying which side refused what."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsHandshakeFailed(
            node, f"the node's certificate is not trusted ({exc.verify_message}): it must "
                  f"be signed by the CA given as --tls-ca")
    reason = getattr(exc, "reason", None) or ""
    if reason in _NODE_REFUSED:
        return TlsHandshakeFailed(node, _NODE_REFUSED[reason])
    if reason in _NOT_TLS or not isinstance(exc, ssl.SSLError):
        return TlsHandshakeFailed(node, _NOT_TLS_REASON + f" ({reason or exc or 'closed'})")
    return TlsHandshakeFailed(node, f"{reason or exc}")


async def _start_tls(transport: asyncio.Transport, protocol: _DistProtocol | None,
                     context: ssl.SSLContext, *, node: str, host: str,
                     timeout: float) -> asyncio.Transport:
    """Run the TLS handshake on the fresh TCP connection; the TLS transport."""
    assert protocol is not None
    loop = asyncio.get_running_loop()
    try:
        tls_transport = await asyncio.wait_for(
            loop.start_tls(transport, protocol, context, server_hostname=host), timeout)
    except TimeoutError as exc:
        transport.close()
        # a plain node reads our TLS hello as the length of a distribution message and
        # waits for the rest, so it never answers
        raise TlsHandshakeFailed(
            node, f"no TLS answer within {timeout:g} s: {_NOT_TLS_REASON}, or it is "
                  f"overloaded") from exc
    except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
        transport.close()
        raise _tls_failure(node, exc) from exc
    if tls_transport is None:  # the connection closed during the handshake
        raise TlsHandshakeFailed(node, _NOT_TLS_REASON)
    return tls_transport


def _closed_early(conn: NodeConnection, protocol: _DistProtocol,
                  fallback: DistError) -> DistError:
    """Why the node closed during the handshake: a TLS refusal, plain TCP to a TLS
    node, or ``fallback`` (what a plain close at that step means)."""
    if isinstance(protocol.lost_exc, ssl.SSLError):
        return _tls_failure(conn.node, protocol.lost_exc)
    tls = conn._transport is not None and conn._transport.get_extra_info("ssl_object")
    # a TLS node reads our name message as a TLS record, answers with an alert record
    # (content type 21, version 3.x) and closes
    if not tls and bytes(protocol.buf[:2]) in (b"\x15\x03", b"\x16\x03"):
        return DistProtocolMismatch(conn.node)
    return fallback


async def _handshake(conn: NodeConnection, protocol: _DistProtocol, cookie: str,
                     alive: str) -> None:
    node = conn.node
    transport = protocol.transport
    assert transport is not None

    def write(data: bytes) -> None:
        # a TLS node that refuses our certificate may have closed already: what it
        # said is read below (writing to a closed TLS transport raises)
        if not transport.is_closing():
            transport.write(data)

    frame = protocol.frame_hs
    write(frame(handshake.send_name(conn.local_name, conn._creation)))

    status_msg = await protocol.read_hs()
    if status_msg is None:
        raise _closed_early(conn, protocol,
                            HandshakeRejected(node, "closed before sending a status"))
    status = handshake.parse_status(node, status_msg)
    if status == "alive":
        # the node has a connection with this name (another process of our identity, or
        # one of ours it has not yet seen close): do not take it over, use another name
        write(frame(b"sfalse"))
        raise _NameTaken
    if status == "nok":
        raise _NameTaken  # the node is still setting up a connection with this name
    if status not in ("ok", "ok_simultaneous"):
        raise HandshakeRejected(node, status)

    challenge_msg = await protocol.read_hs()
    if challenge_msg is None:
        raise _closed_early(conn, protocol,
                            HandshakeRejected(node, "closed before sending its challenge"))
    peer = handshake.parse_challenge(node, challenge_msg)
    peer_alive, at, _ = peer.name.partition("@")
    if peer_alive != alive or not at:
        # EPMD pointed us at another node; do not prove our cookie to it
        raise UnexpectedNode(node, peer.name)
    conn._peer_flags = peer.flags
    conn.peer_name = peer.name
    ours = handshake.new_challenge()
    write(frame(handshake.challenge_reply(ours, peer.challenge, cookie)))

    ack = await protocol.read_hs()
    if ack is None:
        # the peer hangs up on a wrong digest ("Invalid challenge reply" in its log)
        raise _closed_early(conn, protocol, AuthenticationFailed(node))
    if not handshake.ack_ok(ack, ours, cookie):
        raise AuthenticationFailed(node)
    # the peer proved it knows the cookie: from here on, u32 frames
    protocol.handshake_mode = False


class connect:  # reads as a function: ``await connect(...)`` or ``async with connect(...)``
    """Connect to ``node`` as a hidden node; awaitable and an async context manager.

    Args:
        node: ``alive@host``; host is an IPv4/IPv6 literal or a resolvable name.
        cookie: the cluster cookie (see :func:`beamfleet.runtime.erlang_dist.read_cookie_file`).
        timeout: bound of each step (EPMD, TCP connect, handshake), in seconds.
        epmd_port: where EPMD listens on the node's host.
        local_host: host part of our own node name (default: our socket address).
        identity: who connects (e.g. "agent"); our node name is derived from it and
            this host, so repeated connections reuse a few names. Default: the user.
        tls: for nodes using TLS distribution (``-proto_dist inet_tls``): our
            certificate, key and the cluster CA (:class:`TlsConfig`, loaded on each
            connect) or a ready :class:`ssl.SSLContext`. The TCP connection is wrapped
            in TLS before the distribution handshake, which then runs unchanged.

    Example::

        async with connect("app@10.0.1.3", cookie) as conn:
            print(await conn.nodes())
        conn = await connect("app@::1", cookie, timeout=2)

    Raises:
        EpmdUnreachable, NodeNotRegistered, HandshakeRejected, AuthenticationFailed,
        DistTimeout (``.step`` is "epmd", "connect" or "handshake"), ConnectionLost.
        AuthenticationFailed and HandshakeRejected come at once, with ``retry_after``
        set, while the backoff of an earlier such failure on the same target runs.
        UnexpectedNode (a HandshakeRejected): another node answered on that port.
        LocalNamesExhausted (a HandshakeRejected): NAME_POOL_SIZE connections with
        this identity to that node are open already.
        DistProtocolMismatch (a HandshakeRejected): plain TCP to a TLS node.
        TlsHandshakeFailed: the node's certificate is not signed by our CA, the node
        refused our certificate (or that we gave none), or it does not speak TLS.
        TlsConfigError: ``tls`` names a file that cannot be used.
    """

    def __init__(self, node: str, cookie: str, *, timeout: float = 5.0,
                 epmd_port: int = epmd.EPMD_PORT, local_host: str | None = None,
                 identity: str | None = None,
                 tls: TlsConfig | ssl.SSLContext | None = None) -> None:
        self._args = (node, cookie)
        self._kwargs: dict[str, Any] = {"timeout": timeout, "epmd_port": epmd_port,
                                        "local_host": local_host, "identity": identity,
                                        "tls": tls}
        self._conn: NodeConnection | None = None

    def __await__(self) -> Generator[Any, None, NodeConnection]:
        return _open(*self._args, **self._kwargs).__await__()

    async def __aenter__(self) -> NodeConnection:
        self._conn = await _open(*self._args, **self._kwargs)
        return self._conn

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._conn is not None:
            await self._conn.close()
