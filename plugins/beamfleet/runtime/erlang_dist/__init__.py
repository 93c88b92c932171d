"""A pure-Python asyncio hidden-node client of the Erlang distribution protocol.

Example::

    from beamfleet.runtime.erlang_dist import connect, read_cookie_file

    async with connect("app@10.0.1.3", read_cookie_file("/run/secrets/cookie")) as node:
        await node.connect_node("app@10.0.1.4")

See docs/dist.md for the term mapping, the errors and the CLI.
"""

from beamfleet.runtime.erlang_dist import epmd
from beamfleet.runtime.erlang_dist.connection import (
    InvalidNodeName,
    NodeConnection,
    connect,
    name_base,
    split_node,
)
from beamfleet.runtime.erlang_dist.cookie import (
    CookieFileError,
    default_cookie_file,
    read_cookie_file,
)
from beamfleet.runtime.erlang_dist.errors import (
    AuthenticationFailed,
    ConnectionLost,
    DistError,
    DistProtocolMismatch,
    DistTimeout,
    EpmdReplyTooLarge,
    EpmdUnreachable,
    FrameTooLarge,
    HandshakeRejected,
    LocalNamesExhausted,
    NodeNotRegistered,
    RpcError,
    TermCodecError,
    TermTooLarge,
    TlsHandshakeFailed,
    UnexpectedNode,
)
from beamfleet.runtime.erlang_dist.etf import (
    Atom,
    BitBinary,
    Export,
    ImproperList,
    Pid,
    Port,
    Reference,
)
from beamfleet.runtime.erlang_dist.tls import TlsConfig, TlsConfigError

__all__ = [
    "Atom",
    "AuthenticationFailed",
    "BitBinary",
    "ConnectionLost",
    "CookieFileError",
    "DistError",
    "DistProtocolMismatch",
    "DistTimeout",
    "EpmdReplyTooLarge",
    "EpmdUnreachable",
    "Export",
    "FrameTooLarge",
    "HandshakeRejected",
    "ImproperList",
    "InvalidNodeName",
    "LocalNamesExhausted",
    "NodeConnection",
    "NodeNotRegistered",
    "Pid",
    "Port",
    "Reference",
    "RpcError",
    "TermCodecError",
    "TermTooLarge",
    "TlsConfig",
    "TlsConfigError",
    "TlsHandshakeFailed",
    "UnexpectedNode",
    "connect",
    "default_cookie_file",
    "epmd",
    "name_base",
    "read_cookie_file",
    "split_node",
]
