"""`beamfleet node` as a real process against real nodes; erl_call is the oracle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from beamfleet.runtime.cli.node import (
    EXIT_AUTH,
    EXIT_FALSE,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
)
from tests.support.erlang import ErlNode

NodeFactory = Callable[..., ErlNode]


def beamfleet(node: ErlNode, *args: str, cookie_file: Path | None = None,
              ) -> subprocess.CompletedProcess[str]:
    """Run ``beamfleet node ARGS`` with the node's cookie file in $BEAMFLEET_COOKIE_FILE."""
    env = {**os.environ, "BEAMFLEET_COOKIE_FILE": str(cookie_file or node.cookie_file),
           "ERL_EPMD_PORT": str(node.epmd_port)}
    argv = [sys.executable, "-m", "beamfleet", "node", *args]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60,
                            check=False)
    # the secret never shows: not in our argv, not in anything printed
    assert node.cookie not in " ".join(argv)
    assert node.cookie not in result.stdout + result.stderr
    return result


def test_connect_then_erl_call_sees_the_peer(erl_node: NodeFactory) -> None:
    a = erl_node()
    b = erl_node(cookie=a.cookie)
    assert b.name not in a.erl_call("erlang", "nodes", "[]")

    result = beamfleet(a, "connect", a.name, b.name)
    assert result.returncode == EXIT_OK, result.stderr
    # independent oracle: erl_call (C, erl_interface) asks A itself
    assert a.erl_call("erlang", "nodes", "[]") == f"['{b.name}']"

    listed = beamfleet(a, "nodes", a.name, "--json")
    assert listed.returncode == EXIT_OK
    assert json.loads(listed.stdout)["nodes"] == [b.name]

    result = beamfleet(a, "disconnect", a.name, b.name)
    assert result.returncode == EXIT_OK, result.stderr
    assert a.erl_call("erlang", "nodes", "[]") == "[]"


def test_connect_answering_false_exits_1(erl_node: NodeFactory) -> None:
    a = erl_node()
    stranger = erl_node()  # another cookie: A cannot connect to it
    result = beamfleet(a, "connect", a.name, stranger.name, "--json")
    assert result.returncode == EXIT_FALSE
    assert json.loads(result.stdout)["ok"] is False


def test_ping_ok_and_wrong_cookie(erl_node: NodeFactory, tmp_path: Path) -> None:
    node = erl_node()
    result = beamfleet(node, "ping", node.name)
    assert result.returncode == EXIT_OK
    assert node.name in result.stdout

    wrong = tmp_path / "cookie"
    wrong.write_text("WRONG" + node.cookie[5:])
    wrong.chmod(0o400)
    result = beamfleet(node, "ping", node.name, "--json", cookie_file=wrong)
    assert result.returncode == EXIT_AUTH
    assert json.loads(result.stdout)["error"] == "AuthenticationFailed"
    assert "cookies differ" in result.stderr


def test_unreachable_and_timeout_exit_codes(erl_node: NodeFactory) -> None:
    node = erl_node()
    result = beamfleet(node, "ping", f"ghost{node.alive}@127.0.0.1")
    assert result.returncode == EXIT_UNREACHABLE
    assert "not registered" in result.stderr

    with socket.socket() as silent:  # an "EPMD" that accepts and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = str(silent.getsockname()[1])
        result = beamfleet(node, "ping", node.name, "--epmd-port", port, "--timeout", "0.5")
    assert result.returncode == EXIT_TIMEOUT
    assert "'epmd'" in result.stderr


def test_ipv6_node_ping(erl_node: NodeFactory) -> None:
    node = erl_node(host="::1")
    result = beamfleet(node, "ping", node.name, "--json")
    assert result.returncode == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["answer"] == node.name
