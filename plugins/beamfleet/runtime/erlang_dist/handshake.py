"""The distribution handshake (version 6, 'N' messages) as the initiating hidden node.

Pure message building/parsing and the digest; :mod:`~beamfleet.runtime.erlang_dist.connection`
drives the exchange over the socket. Verified against OTP 25 sources and live nodes (see
docs/dist.md): the digest is MD5(cookie + decimal challenge), cookie first.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass

from beamfleet.runtime.erlang_dist.errors import HandshakeRejected

# capability flags (dist.h)
PUBLISHED = 0x1
EXTENDED_REFERENCES = 0x4
DIST_MONITOR = 0x8
FUN_TAGS = 0x10
DIST_MONITOR_NAME = 0x20
NEW_FUN_TAGS = 0x80
EXTENDED_PIDS_PORTS = 0x100
EXPORT_PTR_TAG = 0x200
BIT_BINARIES = 0x400
NEW_FLOATS = 0x800
DIST_HDR_ATOM_CACHE = 0x2000
UTF8_ATOMS = 0x10000
MAP_TAG = 0x20000
BIG_CREATION = 0x40000
SEND_SENDER = 0x80000
FRAGMENTS = 0x800000
HANDSHAKE_23 = 0x1000000
UNLINK_ID = 0x2000000
MANDATORY_25_DIGEST = 0x4000000
SPAWN = 1 << 32
V4_NC = 1 << 34
ALIAS = 1 << 35

# What we announce. Hidden (no PUBLISHED); no atom cache, fragments or alias, so every
# message arrives as a plain 'p' frame with self-contained terms.
OUR_FLAGS = (
    EXTENDED_REFERENCES | DIST_MONITOR | FUN_TAGS | DIST_MONITOR_NAME | NEW_FUN_TAGS
    | EXTENDED_PIDS_PORTS | EXPORT_PTR_TAG | BIT_BINARIES | NEW_FLOATS | UTF8_ATOMS
    | MAP_TAG | BIG_CREATION | HANDSHAKE_23 | UNLINK_ID | MANDATORY_25_DIGEST | V4_NC
)
# what we need the peer to speak (OTP 23+ has all of them)
REQUIRED_PEER_FLAGS = (
    EXTENDED_REFERENCES | EXTENDED_PIDS_PORTS | UTF8_ATOMS | MAP_TAG | BIG_CREATION
    | HANDSHAKE_23 | NEW_FLOATS
)


def digest(cookie: str, challenge: int) -> bytes:
    """MD5 of the cookie followed by the challenge as decimal text."""
    # MD5 is what the protocol mandates
    return hashlib.md5(
        cookie.encode("utf-8") + str(challenge).encode("ascii")
    ).digest()


def new_challenge() -> int:
    return secrets.randbits(32)


def new_creation() -> int:
    return secrets.randbelow(2**32 - 1) + 1  # never 0


def send_name(name: str, creation: int, flags: int = OUR_FLAGS) -> bytes:
    """The ``'N'`` name message body (without the u16 length)."""
    raw = name.encode("utf-8")
    return b"N" + struct.pack(">QIH", flags, creation, len(raw)) + raw


def frame16(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def parse_status(node: str, body: bytes) -> str:
    """The status text of an ``'s'`` message; raise on anything but a known status."""
    if not body or body[:1] != b"s":
        raise HandshakeRejected(node, f"unexpected message {body[:1]!r} instead of a status")
    return body[1:].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Challenge:
    flags: int
    challenge: int
    creation: int
    name: str


def parse_challenge(node: str, body: bytes) -> Challenge:
    """The peer's ``'N'`` challenge message (trailing bytes are ignored, as OTP does)."""
    if body[:1] == b"n":
        raise HandshakeRejected(node, "old_handshake (the node runs OTP < 23; need 23+)")
    if body[:1] != b"N" or len(body) < 19:
        raise HandshakeRejected(node, f"malformed challenge {body[:1]!r}")
    flags, challenge, creation, nlen = struct.unpack_from(">QIIH", body, 1)
    name = body[19:19 + nlen].decode("utf-8", "replace")
    missing = REQUIRED_PEER_FLAGS & ~flags
    if missing:
        raise HandshakeRejected(node, f"peer lacks capability flags {missing:#x}")
    return Challenge(flags, challenge, creation, name)


def challenge_reply(our_challenge: int, peer_challenge: int, cookie: str) -> bytes:
    """The ``'r'`` message body: our challenge and the digest of the peer's."""
    return b"r" + struct.pack(">I", our_challenge) + digest(cookie, peer_challenge)


def ack_ok(body: bytes, our_challenge: int, cookie: str) -> bool:
    """True when the ``'a'`` ack carries the right digest of our challenge."""
    return (len(body) == 17 and body[:1] == b"a"
            and secrets.compare_digest(body[1:], digest(cookie, our_challenge)))
