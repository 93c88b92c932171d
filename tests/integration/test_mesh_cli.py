"""`beamfleet mesh` as a real process against real nodes; erl_call is the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from beamfleet.runtime.cli.mesh import EXIT_COMPLETE, EXIT_INCOMPLETE, EXIT_USAGE
from tests.support.erlang import ErlNode

NodeFactory = Callable[..., ErlNode]


def mesh(node: ErlNode, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BEAMFLEET_COOKIE_FILE": str(node.cookie_file),
        "ERL_EPMD_PORT": str(node.epmd_port),
    }
    argv = [sys.executable, "-m", "beamfleet", "mesh", *args]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert node.cookie not in result.stdout + result.stderr
    return result


def test_complete_only_when_every_node_sees_every_other(erl_node: NodeFactory) -> None:
    a = erl_node()
    b = erl_node(cookie=a.cookie)
    c = erl_node(cookie=a.cookie)
    # a-b connected, c alone: not a mesh
    assert a.erl_call("net_kernel", "connect_node", f"['{b.name}']") == "true"
    result = mesh(a, a.name, b.name, c.name, "--timeout", "0", "--json")
    assert result.returncode == EXIT_INCOMPLETE
    report = json.loads(result.stdout)
    assert report["complete"] is False
    assert sorted(report["missing"][c.name]) == sorted([a.name, b.name])
    assert report["missing"][a.name] == [c.name]
    assert f"{c.name} does not see" in result.stderr

    # connect c to both (independently, with erl_call): now complete
    assert c.erl_call("net_kernel", "connect_node", f"['{a.name}']") == "true"
    assert c.erl_call("net_kernel", "connect_node", f"['{b.name}']") == "true"
    result = mesh(a, a.name, b.name, c.name, "--timeout", "10")
    assert result.returncode == EXIT_COMPLETE, result.stderr
    assert "complete mesh of 3 nodes" in result.stdout
    # the gate connected as a hidden node: nobody lists it
    assert "mesh" not in a.erl_call("erlang", "nodes", "[]")


def test_a_stopped_node_keeps_it_incomplete_and_is_named(erl_node: NodeFactory) -> None:
    a = erl_node()
    b = erl_node(cookie=a.cookie)
    assert a.erl_call("net_kernel", "connect_node", f"['{b.name}']") == "true"
    b.stop()
    result = mesh(a, a.name, b.name, "--timeout", "1.5", "--interval", "0.5", "--json")
    assert result.returncode == EXIT_INCOMPLETE
    report = json.loads(result.stdout)
    assert report["nodes"][b.name]["ok"] is False
    assert report["seconds"] >= 1.5
    assert f"{b.name} could not be asked" in result.stderr


def test_bad_names_and_no_nodes_are_usage_errors(erl_node: NodeFactory) -> None:
    a = erl_node()
    assert mesh(a).returncode == EXIT_USAGE
    result = mesh(a, "not-a-node")
    assert result.returncode == EXIT_USAGE
    assert "not a node name" in result.stderr
