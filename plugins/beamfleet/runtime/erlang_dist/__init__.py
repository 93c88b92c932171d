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
    DistTimeout,
    EpmdUnreachable,
    HandshakeRejected,
    NodeNotRegistered,
    RpcError,
    TermCodecError,
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

__all__ = [
    "Atom",
    "AuthenticationFailed",
    "BitBinary",
    "ConnectionLost",
    "CookieFileError",
    "DistError",
    "DistTimeout",
    "EpmdUnreachable",
    "Export",
    "HandshakeRejected",
    "ImproperList",
    "InvalidNodeName",
    "NodeConnection",
    "NodeNotRegistered",
    "Pid",
    "Port",
    "Reference",
    "RpcError",
    "TermCodecError",
    "connect",
    "default_cookie_file",
    "epmd",
    "read_cookie_file",
    "split_node",
]
