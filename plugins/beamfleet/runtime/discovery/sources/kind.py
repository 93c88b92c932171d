"""How a kind of peer source declares itself, so the registry, ``--source`` help and
validation messages are all derived from one entry per module.

Each source module ends with a ``SOURCE_KIND = SourceKind(...)`` entry; ``sources/__init__.py``
collects them into :data:`~beamfleet.runtime.discovery.sources.REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.sources.base import Source
from beamfleet.runtime.discovery.sources.resolver import StubResolver
from beamfleet.runtime.discovery.sources.subnet import Network


@dataclass(frozen=True)
class SourceSpec:
    """One parsed ``--source KIND:ARG`` (or TOML ``[[source]]``) with the basename it uses."""

    kind: str
    arg: str
    basename: str | None


@dataclass(frozen=True)
class BuildContext:
    """What every peer source may share: naming, a resolver factory, the timeout of one
    query (``--dns-timeout``), the networks DNS answers must be in (``--subnet``) and the
    log (for the addresses dropped by that filter).

    ``resolver`` is a factory so that only sources that use DNS read ``/etc/resolv.conf``.
    """

    naming: PeerNaming
    resolver: Callable[[], StubResolver]
    timeout: float
    subnets: tuple[Network, ...] = ()
    log: JsonLog | None = None


@dataclass(frozen=True)
class SourceKind:
    """The declaration of one kind of peer source.

    Args:
        kind: the word before ``:`` in ``--source KIND:ARG``.
        usage: the form shown in help, e.g. ``"dns:NAME"`` or ``"rancher[:URL]"``.
        example: an argument that works, shown in error messages and tested to build.
        help: one line saying which peers it gives.
        needs_basename: it gives addresses, so node names need ``--basename``.
        arg_required: ``False`` when ``KIND`` alone is valid (``rancher``).
        build: makes the source from a validated spec and the shared context.

    Example::

        SourceKind("static", "static:A@H,B@H", "app@10.0.0.1,app@10.0.0.2",
                   "exactly these full node names", needs_basename=False,
                   build=lambda spec, ctx: StaticSource(spec.arg))
    """

    kind: str
    usage: str
    example: str
    help: str
    needs_basename: bool
    build: Callable[[SourceSpec, BuildContext], Source]
    arg_required: bool = True

    @property
    def example_spec(self) -> str:
        """The example as a whole ``KIND:ARG`` value."""
        return f"{self.kind}:{self.example}" if self.example else self.kind
