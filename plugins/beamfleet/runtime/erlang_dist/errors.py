"""Errors of the distribution client; every one is a :class:`DistError`.

Each message says what went wrong and what to check, because the usual symptom of a
clustering problem (a cookie mismatch, a node that is not up) is otherwise only a line
in the *remote* node's log.
"""

from __future__ import annotations


class DistError(Exception):
    """Base class of every error raised by ``beamfleet.runtime.erlang_dist``."""


def _retry_hint(retry_after: float | None) -> str:
    if retry_after is None:
        return ""
    return (f" (failed fast: an attempt just failed so and was not repeated; it may be "
            f"retried in {retry_after:.1f} s)")


class TermCodecError(DistError, ValueError):
    """An Erlang term could not be encoded or decoded (External Term Format)."""


class TermTooLarge(TermCodecError):
    """A received term is over a decoding limit (inflated size, elements, depth, hashing).

    The limits (``etf.MAX_INFLATED``, ``MAX_ITEMS``, ``MAX_DEPTH``, ``MAX_KEYS_PER_HASH``)
    are sized for control-plane replies; a term over them is either a call that returns
    far more than intended or a hostile peer.
    """


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


class EpmdReplyTooLarge(EpmdUnreachable):
    """EPMD (or what answers on its port) sent more than a reply can hold."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        super().__init__(host, port, f"answer longer than {limit:,} bytes; "
                                     f"is that really EPMD?")
        self.limit = limit


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

    def __init__(self, node: str, status: str, *, retry_after: float | None = None) -> None:
        self.node = node
        self.status = status
        self.retry_after = retry_after
        hint = {
            "nok": "the node is busy setting up a connection to us; retry",
            "not_allowed": "the node refuses our capabilities or our host "
                           "(check its net_kernel:allow/1 and OTP version)",
            "alive": "a connection with our name already exists",
            "closed before sending a status": "see the remote node's log; a node that uses "
            "TLS distribution also does this to a plain connection (then give --tls-cert, "
            "--tls-key and --tls-ca)",
            "tls_expected": "the node expects TLS distribution; give --tls-cert, --tls-key "
            "and --tls-ca",
        }.get(status, "see the remote node's log")
        super().__init__(f"handshake with {node} rejected with status {status!r}: {hint}"
                         f"{_retry_hint(retry_after)}")


class UnexpectedNode(HandshakeRejected):
    """A different node answered: the name in its challenge is not the one asked for."""

    def __init__(self, node: str, answered: str) -> None:
        self.answered = answered
        DistError.__init__(
            self,
            f"asked for {node} but the node listening there is called {answered!r}: "
            f"EPMD on that host points at another node (a stale registration or a "
            f"port reused); check the name and `epmd -names` there")
        self.node = node
        self.status = "unexpected_node"
        self.retry_after = None


class LocalNamesExhausted(HandshakeRejected):
    """Every name of our identity's pool is already connected to the node."""

    def __init__(self, node: str, pool: int) -> None:
        DistError.__init__(
            self,
            f"all {pool} local node names of this identity are connected to {node} "
            f"already: close a connection or connect with another identity=")
        self.node = node
        self.status = "alive"
        self.retry_after = None
        self.pool = pool


class DistProtocolMismatch(HandshakeRejected):
    """The node speaks TLS distribution and we connected in plain TCP."""

    def __init__(self, node: str) -> None:
        DistError.__init__(
            self,
            f"node {node} closed the connection during the handshake: it expects TLS "
            f"distribution (it answered with a TLS alert); give --tls-cert, --tls-key and "
            f"--tls-ca (tls= in the API)")
        self.node = node
        self.status = "tls_expected"
        self.retry_after = None


class TlsHandshakeFailed(DistError):
    """The TLS session under the distribution could not be set up.

    ``reason`` says which side refused what: the node's certificate is not signed by our
    CA, the node refused our certificate (or that we presented none), or the node does
    not speak TLS distribution at all.
    """

    def __init__(self, node: str, reason: str) -> None:
        self.node = node
        self.reason = reason
        super().__init__(f"TLS handshake with {node} failed: {reason}")


class AuthenticationFailed(DistError):
    """The challenge digest did not match: the two sides use different cookies."""

    def __init__(self, node: str, *, retry_after: float | None = None) -> None:
        self.node = node
        self.retry_after = retry_after
        super().__init__(
            f"authentication with {node} failed: the cookies differ (the node's cookie is "
            f"not the one we used); its log says \"Invalid challenge reply\""
            f"{_retry_hint(retry_after)}"
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


class FrameTooLarge(ConnectionLost):
    """The peer announced a frame over ``connection.MAX_FRAME``; the connection is closed."""

    def __init__(self, node: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(node, f"the node announced a frame of {size:,} bytes, over the "
                               f"limit of {limit:,} (connection closed)")
