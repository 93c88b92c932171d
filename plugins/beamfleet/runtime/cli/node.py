"""``beamfleet node``: talk to a BEAM node over Erlang distribution, as a hidden node.

    beamfleet node ping app@10.0.1.3
    beamfleet node nodes app@10.0.1.3 --kind connected --json
    beamfleet node connect app@10.0.1.3 app@10.0.1.4
    beamfleet node disconnect app@10.0.1.3 app@10.0.1.4

The cookie is read from a file only (``--cookie-file``, else ``$BEAMFLEET_COOKIE_FILE``,
else ``~/.erlang.cookie``): a value on the command line would show in ``ps``. The file
must be private (no group/other permission bits, e.g. ``chmod 400``), as ``erl`` demands.
Nodes using TLS distribution need ``--tls-cert``, ``--tls-key`` and ``--tls-ca``.

Exit codes: 0 done/true · 1 the operation answered false · 2 bad usage or input (incl.
the cookie file) · 3 authentication failed (cookies differ) · 4 node unreachable (EPMD
down, not registered, refused, connection lost) · 5 timed out · 6 the RPC failed (badrpc).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from beamfleet.runtime.cli.cookie import (
    cookie_file_option,
    epmd_port_option,
    read_private_cookie,
)
from beamfleet.runtime.cli.tls import tls_config, tls_options
from beamfleet.runtime.erlang_dist import (
    AuthenticationFailed,
    CookieFileError,
    DistError,
    DistTimeout,
    InvalidNodeName,
    NodeConnection,
    RpcError,
    TlsConfig,
    TlsConfigError,
    connect,
    default_cookie_file,
)

EXIT_OK = 0
EXIT_FALSE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_RPC = 6

F = TypeVar("F", bound=Callable[..., Any])
Action = Callable[[NodeConnection], Awaitable[tuple[int, dict[str, Any], str]]]


@dataclass(frozen=True)
class NodeCall:
    """What every ``beamfleet node`` command shares: the cookie, the bounds, the output."""

    cookie_file: Path | None
    timeout: float
    epmd_port: int
    as_json: bool
    tls: TlsConfig | None = None

    def run(self, node: str, action: Action) -> None:
        """Connect, run ``action``, print its result; map every failure to an exit code."""
        try:
            cookie = read_private_cookie(self.cookie_file or default_cookie_file())

            async def main() -> tuple[int, dict[str, Any], str]:
                async with connect(
                    node, cookie, timeout=self.timeout, epmd_port=self.epmd_port, tls=self.tls
                ) as conn:
                    return await action(conn)

            code, payload, text = asyncio.run(main())
        except DistError as exc:
            code = _exit_code(exc)
            if self.as_json:
                failure = {"node": node, "ok": False, "error": type(exc).__name__}
                click.echo(json.dumps({**failure, "message": str(exc)}, sort_keys=True))
            click.echo(f"error: {exc}", err=True)
            sys.exit(code)
        _emit(self.as_json, {"node": node, **payload}, text)
        sys.exit(code)


def _common_options(func: F) -> F:
    """The options every command takes, handed to it as one ``call: NodeCall``."""

    @cookie_file_option
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0.05),
        default=5.0,
        show_default=True,
        help="Seconds allowed for each step and the call.",
    )
    @epmd_port_option
    @tls_options
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @wraps(func)
    def wrapper(
        *args: Any,
        cookie_file: Path | None,
        timeout: float,
        epmd_port: int,
        tls_cert: Path | None,
        tls_key: Path | None,
        tls_ca: Path | None,
        as_json: bool,
        **kwargs: Any,
    ) -> Any:
        tls = tls_config(tls_cert, tls_key, tls_ca)
        call = NodeCall(cookie_file, timeout, epmd_port, as_json, tls)
        return func(*args, call=call, **kwargs)

    return wrapper  # type: ignore[return-value]


def _exit_code(exc: DistError) -> int:
    if isinstance(exc, AuthenticationFailed):
        return EXIT_AUTH
    if isinstance(exc, DistTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, RpcError):
        return EXIT_RPC
    if isinstance(exc, (CookieFileError, InvalidNodeName, TlsConfigError)):
        return EXIT_USAGE
    return EXIT_UNREACHABLE


def _emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    if as_json:
        click.echo(json.dumps(payload, sort_keys=True))
    elif text:
        click.echo(text)


EXIT_CODES_HELP = """\b
Exit codes:
  0  done (connect/disconnect answered true)
  1  the operation answered false
  2  usage or input error (options, node name, cookie file, TLS files)
  3  authentication failed: the cookies differ
  4  unreachable: EPMD down, node not registered, refused, lost, TLS
     handshake failed or TLS/plain distribution mismatch
  5  timed out (the message names the step)
  6  the RPC failed (badrpc)"""


@click.group(epilog=EXIT_CODES_HELP)
def node() -> None:
    """Talk to a BEAM node over the Erlang distribution protocol (as a hidden node).

    The cookie is read from --cookie-file, else $BEAMFLEET_COOKIE_FILE, else
    ~/.erlang.cookie; it is never taken from the command line nor printed. The file must
    be readable by its owner only (chmod 400), like erl demands.
    """


@node.command(epilog=EXIT_CODES_HELP)
@click.argument("node_name", metavar="NODE")
@_common_options
def ping(*, node_name: str, call: NodeCall) -> None:
    """Connect to NODE (handshake with the cookie) and run one RPC."""

    async def action(conn: NodeConnection) -> tuple[int, dict[str, Any], str]:
        start = time.perf_counter()
        answer = await conn.rpc("erlang", "node", [], timeout=call.timeout)
        ms = (time.perf_counter() - start) * 1000
        return (
            EXIT_OK,
            {"ok": True, "answer": str(answer), "rpc_ms": round(ms, 3)},
            f"pong from {answer} (rpc {ms:.1f} ms)",
        )

    call.run(node_name, action)


@node.command(epilog=EXIT_CODES_HELP)
@click.argument("node_name", metavar="NODE")
@click.option(
    "--kind",
    type=click.Choice(["visible", "hidden", "connected", "known"]),
    default="visible",
    show_default=True,
    help="Which nodes (erlang:nodes/1).",
)
@_common_options
def nodes(
    *,
    node_name: str,
    kind: str,
    call: NodeCall,
) -> None:
    """List the nodes NODE is connected to (one per line)."""

    async def action(conn: NodeConnection) -> tuple[int, dict[str, Any], str]:
        found = sorted(await conn.nodes(kind, timeout=call.timeout))
        return EXIT_OK, {"ok": True, "kind": kind, "nodes": found}, "\n".join(found)

    call.run(node_name, action)


@node.command(name="connect", epilog=EXIT_CODES_HELP)
@click.argument("node_name", metavar="NODE")
@click.argument("peer", metavar="PEER")
@_common_options
def connect_cmd(
    *,
    node_name: str,
    peer: str,
    call: NodeCall,
) -> None:
    """Make NODE connect to PEER (net_kernel:connect_node/1). Exit 1 when it answers false."""

    async def action(conn: NodeConnection) -> tuple[int, dict[str, Any], str]:
        ok = await conn.connect_node(peer, timeout=call.timeout)
        text = (
            f"{node_name} connected to {peer}"
            if ok
            else f"{node_name} could not connect to {peer} (false: down, unreachable, or cookie)"
        )
        return (EXIT_OK if ok else EXIT_FALSE), {"ok": ok, "peer": peer}, text

    call.run(node_name, action)


@node.command(epilog=EXIT_CODES_HELP)
@click.argument("node_name", metavar="NODE")
@click.argument("peer", metavar="PEER")
@_common_options
def disconnect(
    *,
    node_name: str,
    peer: str,
    call: NodeCall,
) -> None:
    """Make NODE drop its connection to PEER (erlang:disconnect_node/1)."""

    async def action(conn: NodeConnection) -> tuple[int, dict[str, Any], str]:
        ok = await conn.disconnect_node(peer, timeout=call.timeout)
        text = (
            f"{node_name} disconnected from {peer}"
            if ok
            else f"{node_name} did not disconnect from {peer} (false)"
        )
        return (EXIT_OK if ok else EXIT_FALSE), {"ok": ok, "peer": peer}, text

    call.run(node_name, action)
