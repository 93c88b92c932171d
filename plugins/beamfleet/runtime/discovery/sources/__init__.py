"""Peer sources: where the agent learns which nodes should form the cluster.

Each kind lives in its own module, which ends with a :class:`SourceKind` declaration
(its kind, usage, example, help, whether it needs ``--basename``, and its constructor).
:data:`REGISTRY` collects them; validation messages, ``--source`` help and the docs are
derived from it. To add a kind, write the module and add it to :data:`REGISTRY`.

Example::

    build_source("dns", "tasks.app", basename="app", naming=PeerNaming.parse("ip"),
                 resolver=StubResolver.from_system)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.sources import dns, epmd, file, rancher, srv, static
from beamfleet.runtime.discovery.sources.base import Source
from beamfleet.runtime.discovery.sources.dns import DnsSource
from beamfleet.runtime.discovery.sources.epmd import EpmdSource
from beamfleet.runtime.discovery.sources.file import FileSource
from beamfleet.runtime.discovery.sources.kind import BuildContext, SourceKind, SourceSpec
from beamfleet.runtime.discovery.sources.rancher import RancherSource
from beamfleet.runtime.discovery.sources.resolver import StubResolver
from beamfleet.runtime.discovery.sources.srv import SrvSource
from beamfleet.runtime.discovery.sources.static import StaticSource
from beamfleet.runtime.discovery.sources.subnet import Network

REGISTRY: dict[str, SourceKind] = {
    m.SOURCE_KIND.kind: m.SOURCE_KIND for m in (dns, srv, rancher, static, file, epmd)
}
"""Every kind of peer source by its ``KIND``, in the order help and docs list them."""

KINDS = tuple(REGISTRY)

__all__ = [
    "KINDS",
    "REGISTRY",
    "BuildContext",
    "DnsSource",
    "EpmdSource",
    "FileSource",
    "RancherSource",
    "Source",
    "SourceKind",
    "SourceSpec",
    "SrvSource",
    "StaticSource",
    "StubResolver",
    "build_source",
    "source_problems",
    "sources_help",
    "split_source",
]


def split_source(text: str) -> tuple[str, str]:
    """``"dns:tasks.app"`` -> ``("dns", "tasks.app")``; ``"rancher"`` -> ``("rancher", "")``."""
    kind, _, arg = text.partition(":")
    return kind.strip(), arg.strip()


def sources_help() -> str:
    """The usage forms of every kind, e.g. ``"dns:NAME, srv:NAME, ..."`` (for ``--help``)."""
    return ", ".join(k.usage for k in REGISTRY.values())


def source_problems(kind: str, arg: str, basename: str | None) -> list[str]:
    """Problems with one ``--source`` value (empty when it is fine)."""
    spec = f"--source {kind}:{arg}" if arg else f"--source {kind}"
    declared = REGISTRY.get(kind)
    if declared is None:
        return [f"{spec}: unknown kind {kind!r}; use one of: {sources_help()}"]
    problems = []
    if declared.arg_required and not arg:
        problems.append(f"{spec}: {kind} needs an argument, e.g. {declared.example_spec}")
    if declared.needs_basename and not basename:
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
    subnets: Sequence[Network] = (),
    log: JsonLog | None = None,
) -> Source:
    """The peer source for ``--source KIND:ARG``; raises :class:`ConfigError` when invalid.

    ``subnets`` (``--subnet``) restricts the addresses of the DNS-backed kinds; ``log``
    receives what that filter drops.
    """
    problems = source_problems(kind, arg, basename)
    if problems:
        raise ConfigError(problems)
    context = BuildContext(
        naming=naming, resolver=resolver, timeout=timeout, subnets=tuple(subnets), log=log
    )
    return REGISTRY[kind].build(SourceSpec(kind, arg, basename), context)
