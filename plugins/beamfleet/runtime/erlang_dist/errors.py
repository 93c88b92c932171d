"""Errors of the distribution client; every one is a :class:`DistError`.

Each message says what went wrong and what to check, because the usual symptom of a
clustering problem (a cookie mismatch, a node that is not up) is otherwise only a line
in the *remote* node's log.
"""

from __future__ import annotations


class DistError(Exception):
    """Base class of every error raised by ``beamfleet.runtime.erlang_dist``."""


class TermCodecError(DistError, ValueError):
    """An Erlang term could not be encoded or decoded (External Term Format)."""


class EpmdUnreachable(DistError):
    """No EPMD answered at ``host:port``."""

    def __init__(self, host: str, port: int = 4369, reason: str = "") -> None:
        self.host = host
        self.port = port
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"EPMD unreachable at {host}:{port}{detail}: is an Erlang node (or epmd) "
            f"running on that host, and is TCP {port} open from here?"
        )


class NodeNotRegistered(DistError):
    """EPMD answered but has no node of that name."""

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(
            f"node {node} is not registered in EPMD on its host: check the name before '@' "
            f"(`epmd -names` on that host lists the registered ones) and that the node is up"
        )


class HandshakeRejected(DistError):
    """The peer refused the distribution handshake with a status (``nok``, ``not_allowed``)."""

    def __init__(self, node: str, status: str) -> None:
        self.node = node
        self.status = status
        hint = {
            "nok": "the node is busy setting up a connection to us; retry",
            "not_allowed": "the node refuses our capabilities or our host "
                           "(check its net_kernel:allow/1 and OTP version)",
            "alive": "a connection with our name already exists",
        }.get(status, "see the remote node's log")
        super().__init__(f"handshake with {node} rejected with status {status!r}: {hint}")


class AuthenticationFailed(DistError):
    """The challenge digest did not match: the two sides use different cookies."""

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(
            f"authentication with {node} failed: the cookies differ (the node's cookie is "
            f"not the one we used); its log says \"Invalid challenge reply\""
        )


class RpcError(DistError):
    """The remote call returned ``{badrpc, Reason}``."""

    def __init__(self, reason: object, *, call: str = "") -> None:
        self.reason = reason
        where = f" {call}" if call else ""
        super().__init__(f"rpc{where} failed: badrpc {reason!r}")


class DistTimeout(DistError, TimeoutError):
    """A step did not finish in time; ``step`` says which (epmd, connect, handshake, rpc)."""

    def __init__(self, step: str, seconds: float, target: str = "") -> None:
        self.step = step
        self.seconds = seconds
        self.target = target
        on = f" with {target}" if target else ""
        super().__init__(
            f"timed out after {seconds:g} s in step {step!r}{on}: the host may be down or "
            f"firewalled, or the node overloaded"
        )


class ConnectionLost(DistError, ConnectionError):
    """The connection closed (peer gone, tick timeout, or closed by us)."""

    def __init__(self, node: str, reason: str = "") -> None:
        self.node = node
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"connection to {node} lost{detail}")
