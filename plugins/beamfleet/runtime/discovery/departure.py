"""Removing a departed-but-alive node without any remaining node losing a peer.

Why not just ``erlang:disconnect_node(Departed)`` on each remaining node? With OTP 25+'s
default ``prevent_overlapping_partitions``, ``global`` on every node that loses a
connection tells the others; a node that still has a connection to the *lost* node
then drops it. When remaining node R disconnects departed node D, D's ``global`` reports
"D lost R" to everyone still connected to D, and they all drop R: R is cut off from the
cluster (measured: 0.2-5 s) although nobody asked for that.

So the departed node leaves in one step, on its own side: one RPC runs, on D,

    G = whereis(global_name_server), suspend_process(G),
    R = lists:map(fun erlang:disconnect_node/1, Peers),
    resume_process(G), R

While ``global`` on D is suspended it cannot report any loss; when it resumes, D is
connected to none of the peers, so its reports (sent without auto-connect) reach nobody.
The remaining nodes each report "lost D", which makes the others drop D: exactly the
wanted outcome. The suspension lasts microseconds and ends with the RPC process even
if it crashes (a suspension dies with the process that made it).

The expression is sent as Erlang abstract format and run with ``erl_eval:exprs/2``, so
no module has to be installed on the nodes.

If D cannot be reached at all, it cannot report anything either, and the remaining
nodes simply disconnect it (see :mod:`beamfleet.runtime.discovery.reconcile`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beamfleet.runtime.erlang_dist import Atom

_L = 1  # line annotation of every abstract-format node


def _atom(a: str) -> tuple[Any, ...]:
    return (Atom("atom"), _L, Atom(a))


def _var(v: str) -> tuple[Any, ...]:
    return (Atom("var"), _L, Atom(v))


def _call(m: str, f: str, args: Sequence[Any]) -> tuple[Any, ...]:
    return (Atom("call"), _L, (Atom("remote"), _L, _atom(m), _atom(f)), list(args))


def _list(items: Sequence[Any]) -> tuple[Any, ...]:
    out: tuple[Any, ...] = (Atom("nil"), _L)
    for item in reversed(items):
        out = (Atom("cons"), _L, item, out)
    return out


def leave_exprs(peers: Sequence[str]) -> list[Any]:
    """Abstract format of the "leave these peers in one go" expression sequence."""
    fun_ref = (
        Atom("fun"),
        _L,
        (Atom("function"), _atom("erlang"), _atom("disconnect_node"), (Atom("integer"), _L, 1)),
    )
    return [
        (Atom("match"), _L, _var("G"), _call("erlang", "whereis", [_atom("global_name_server")])),
        _call("erlang", "suspend_process", [_var("G")]),
        (
            Atom("match"),
            _L,
            _var("R"),
            _call("lists", "map", [fun_ref, _list([_atom(p) for p in peers])]),
        ),
        _call("erlang", "resume_process", [_var("G")]),
        _var("R"),
    ]


def leave_rpc_args(peers: Sequence[str]) -> tuple[str, str, list[Any]]:
    """``(module, function, args)`` of the RPC that makes a node leave ``peers``."""
    return "erl_eval", "exprs", [leave_exprs(peers), []]
