"""The node-name rules naming, discovery and the distribution client share."""

from __future__ import annotations

import pytest

from beamfleet.runtime.discovery.peers import Peer
from beamfleet.runtime.discovery.peers import is_node_name as peers_is_node_name
from beamfleet.runtime.erlang_dist import InvalidNodeName, split_node
from beamfleet.runtime.naming import InvalidInputError, make_node_name
from beamfleet.runtime.node_names import (
    ALIVE_MAX,
    InvalidHostError,
    InvalidNodeNameError,
    UnusableAddressError,
    is_alive,
    is_node_name,
    parse_host,
    split_node_name,
)

ALIVE = [
    ("app", True),
    ("a", True),
    ("rem-1234_x", True),
    ("A" * ALIVE_MAX, True),
    ("A" * (ALIVE_MAX + 1), False),
    ("", False),
    ("app.1", False),
    ("app x", False),
    ("app@x", False),
    ("äpp", False),
]


@pytest.mark.parametrize(("text", "valid"), ALIVE)
def test_alive_part(text: str, valid: bool) -> None:
    assert is_alive(text) is valid


# host as given -> (canonical text, longnames, ipv6) or the error class
HOSTS: list[tuple[str, tuple[str, bool, bool] | type[Exception]]] = [
    ("10.0.9.4", ("10.0.9.4", True, False)),
    (" 10.0.9.4\n", ("10.0.9.4", True, False)),
    ("fd00:0::3", ("fd00::3", True, True)),
    ("::1", ("::1", True, True)),
    ("n1.example", ("n1.example", True, False)),
    ("n1.example.", ("n1.example", True, False)),
    ("web-1", ("web-1", False, False)),
    ("localhost", ("localhost", False, False)),
    ("0.0.0.0", UnusableAddressError),
    ("::", UnusableAddressError),
    ("224.0.0.1", UnusableAddressError),
    ("ff02::1", UnusableAddressError),
    ("fe80::1%eth0", InvalidHostError),
    ("[fd00::3]", InvalidHostError),
    ("my_host", InvalidHostError),
    ("-web", InvalidHostError),
    ("a..b", InvalidHostError),
    ("", InvalidHostError),
    ("x" * 64, InvalidHostError),
    (".".join(["abc"] * 64), InvalidHostError),  # 255 characters
]


@pytest.mark.parametrize(("text", "expected"), HOSTS)
def test_host_part(text: str, expected: tuple[str, bool, bool] | type[Exception]) -> None:
    if isinstance(expected, tuple):
        host = parse_host(text)
        assert (host.text, host.longnames, host.ipv6) == expected
    else:
        with pytest.raises(expected):
            parse_host(text)


# whole node name -> (alive, host) or None when invalid
NAMES: list[tuple[str, tuple[str, str] | None]] = [
    ("app@10.0.1.3", ("app", "10.0.1.3")),
    ("app@fd00::3", ("app", "fd00::3")),
    ("app@[fd00::3]", ("app", "fd00::3")),
    ("app@n1.example", ("app", "n1.example")),
    ("app@localhost", ("app", "localhost")),
    ("app", None),
    ("app@", None),
    ("@host", None),
    ("app@h@h", None),
    ("app@ host", None),
    ("app@host ", None),
    ("ap p@host", None),
    ("app@fe80::1%eth0", None),
    ("app@0.0.0.0", None),
]


@pytest.mark.parametrize(("node", "parts"), NAMES)
def test_node_name_rules_are_the_same_everywhere(node: str, parts: tuple[str, str] | None) -> None:
    valid = parts is not None
    assert is_node_name(node) is valid
    assert peers_is_node_name(node) is valid
    if parts is None:
        with pytest.raises(InvalidNodeNameError):
            split_node_name(node)
        with pytest.raises(InvalidNodeName):  # the distribution client's own class
            split_node(node)
        return
    assert split_node_name(node) == parts
    assert split_node(node) == parts
    peer = Peer(node)
    assert (peer.alive, peer.host) == parts
    naming = make_node_name(*parts)
    assert naming.name == f"{parts[0]}@{parse_host(parts[1]).text}"


def test_naming_keeps_its_error_class_and_messages() -> None:
    with pytest.raises(InvalidInputError, match="cannot be a node's host"):
        make_node_name("app", "0.0.0.0")
    with pytest.raises(InvalidInputError, match="invalid host 'my_host'"):
        make_node_name("app", "my_host")
    with pytest.raises(InvalidInputError, match="invalid --basename"):
        make_node_name("app.1", "10.0.0.1")
