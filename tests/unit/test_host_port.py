"""HOST:PORT parsing shared by --listen, --nameserver and the epmd source."""

from __future__ import annotations

import pytest

from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.server import parse_listen
from beamfleet.runtime.discovery.sources import EpmdSource, build_source
from beamfleet.runtime.discovery.sources.resolver import StubResolver, parse_nameserver
from beamfleet.runtime.host_port import split_host_port

# text, default port -> (host, port) or None when it must be refused
CASES: list[tuple[str, int | None, tuple[str, int] | None]] = [
    ("127.0.0.1:9568", None, ("127.0.0.1", 9568)),
    ("[::]:9568", None, ("::", 9568)),
    ("[fd00::2]:53", None, ("fd00::2", 53)),
    ("ns1.example:5353", None, ("ns1.example", 5353)),
    ("10.0.0.2", 53, ("10.0.0.2", 53)),
    ("fd00::2", 53, ("fd00::2", 53)),
    ("[fd00::2]", 53, ("fd00::2", 53)),
    ("10.0.0.2:5353", 53, ("10.0.0.2", 5353)),
    ("10.0.0.2", None, None),
    ("fd00::2", None, None),
    ("::1:9568", None, None),  # ambiguous without brackets
    (":9568", None, None),
    ("[]:9568", None, None),
    ("[fd00::2]9568", None, None),
    ("[fd00::2", 53, None),
    ("host:0", None, None),
    ("host:65536", None, None),
    ("host:http", None, None),
    ("host:", None, None),
]


@pytest.mark.parametrize(("text", "default", "expected"), CASES)
def test_split_host_port(text: str, default: int | None, expected: tuple[str, int] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="'"):
            split_host_port(text, default_port=default)
    else:
        assert split_host_port(text, default_port=default) == expected


def test_callers_keep_their_errors() -> None:
    assert parse_listen("[::1]:9568") == ("::1", 9568)
    with pytest.raises(ValueError, match="--listen"):
        parse_listen("9568")
    assert parse_nameserver("10.0.0.2") == ("10.0.0.2", 53)
    with pytest.raises(ConfigError, match="--nameserver"):
        parse_nameserver("10.0.0.2:x")


@pytest.mark.parametrize(
    ("arg", "host", "port"),
    [
        ("10.0.0.1", "10.0.0.1", 4369),
        ("10.0.0.1:4370", "10.0.0.1", 4370),
        ("[fd00::1]:4370", "fd00::1", 4370),
        ("fd00::1", "fd00::1", 4369),
    ],
)
def test_epmd_source_address(arg: str, host: str, port: int) -> None:
    source = build_source(
        "epmd",
        arg,
        basename=None,
        naming=PeerNaming.parse("ip"),
        resolver=lambda: StubResolver([("127.0.0.1", 53)]),
    )
    assert isinstance(source, EpmdSource)
    assert (source._host, source._port) == (host, port)
    with pytest.raises(ConfigError, match="epmd"):
        build_source(
            "epmd",
            "h:99999",
            basename=None,
            naming=PeerNaming.parse("ip"),
            resolver=lambda: StubResolver([("127.0.0.1", 53)]),
        )
