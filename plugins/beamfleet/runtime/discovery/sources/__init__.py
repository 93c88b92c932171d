"""Sources of desired peers, one module each, all behind :class:`Source`.

``build_source("dns", "tasks.app", basename="app", ...)`` turns a ``--source KIND:ARG``
into a source object.
"""

from __future__ import annotations

from collections.abc import Callable

from beamfleet.runtime.constants import EPMD_PORT
from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.sources.base import Source
from beamfleet.runtime.discovery.sources.dns import DnsSource
from beamfleet.runtime.discovery.sources.epmd import EpmdSource
from beamfleet.runtime.discovery.sources.file import FileSource
from beamfleet.runtime.discovery.sources.rancher import RancherSource
from beamfleet.runtime.discovery.sources.resolver import StubResolver
from beamfleet.runtime.discovery.sources.srv import SrvSource
from beamfleet.runtime.discovery.sources.static import StaticSource
from beamfleet.runtime.host_port import split_host_port

KINDS = ("dns", "srv", "rancher", "static", "file", "epmd")
NEEDS_BASENAME = ("dns", "srv", "rancher")

__all__ = [
    "KINDS",
    "DnsSource",
    "EpmdSource",
    "FileSource",
    "RancherSource",
    "Source",
    "SrvSource",
    "StaticSource",
    "StubResolver",
    "build_source",
    "source_problems",
]


def source_problems(kind: str, arg: str, basename: str | None) -> list[str]:
    """Problems with one ``--source`` value (empty when it is fine)."""
    spec = f"--source {kind}:{arg}" if arg else f"--source {kind}"
    if kind not in KINDS:
        return [f"{spec}: unknown kind {kind!r}; use one of {', '.join(KINDS)}"]
    problems = []
    if kind != "rancher" and not arg:
        problems.append(
            f"{spec}: {kind} needs an argument, e.g. "
            + {
                "dns": "dns:tasks.app",
                "srv": "srv:_erlang._tcp.app.internal",
                "static": "static:app@10.0.0.1,app@10.0.0.2",
                "file": "file:/etc/beamfleet/peers",
                "epmd": "epmd:10.0.0.1",
            }[kind]
        )
    if kind in NEEDS_BASENAME and not basename:
        problems.append(
            f"{spec}: gives addresses, so it needs --basename NAME "
            "(the part before @ in the node names)"
        )
    return problems


def build_source(
    kind: str,
    arg: str,
    *,
    basename: str | None,
    naming: PeerNaming,
    resolver: Callable[[], StubResolver],
    timeout: float = 2.0,
) -> Source:
    """A source for ``--source KIND:ARG`` (validated with :func:`source_problems` first)."""
    problems = source_problems(kind, arg, basename)
    if problems:
        raise ConfigError(problems)
    if kind == "dns":
        assert basename
        return DnsSource(arg, basename=basename, resolver=resolver(), naming=naming)
    if kind == "srv":
        assert basename
        return SrvSource(arg, basename=basename, resolver=resolver(), naming=naming)
    if kind == "rancher":
        assert basename
        return RancherSource(arg or None, basename=basename, naming=naming, timeout=timeout)
    if kind == "static":
        return StaticSource(arg)
    if kind == "file":
        return FileSource(arg, basename=basename, naming=naming)
    try:
        host, port = split_host_port(arg, default_port=EPMD_PORT)
    except ValueError as exc:
        raise ConfigError([f"--source epmd:{arg}: expected HOST[:PORT] ({exc})"]) from exc
    return EpmdSource(host, basename=basename, port=port, timeout=timeout)
