"""``static:app@10.0.0.1,app@10.0.0.2`` — a fixed list of full node names."""

from __future__ import annotations

from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.peers import Peer, is_node_name
from beamfleet.runtime.discovery.sources.kind import BuildContext, SourceKind, SourceSpec


class StaticSource:
    """A fixed set of node names.

    Example::

        StaticSource("app@10.0.0.1,app@10.0.0.2")
    """

    def __init__(self, arg: str) -> None:
        names = [n.strip() for n in arg.split(",") if n.strip()]
        bad = [n for n in names if not is_node_name(n)]
        if not names or bad:
            raise ConfigError(
                [
                    f"--source static:{arg}: expected comma-separated NAME@HOST "
                    f"node names (bad: {', '.join(bad) or 'empty list'})"
                ]
            )
        self.label = f"static:{arg}"
        self.basename: str | None = None
        self._peers = {Peer(n) for n in names}
        self.empty_reason = ""  # never empty: an empty list is refused up front
        self.resolver_stats = None  # no DNS lookups

    async def poll(self) -> set[Peer]:
        return set(self._peers)


def _build(spec: SourceSpec, ctx: BuildContext) -> StaticSource:
    return StaticSource(spec.arg)


SOURCE_KIND = SourceKind(
    kind="static",
    usage="static:A@H,B@H",
    example="app@10.0.0.1,app@10.0.0.2",
    help="exactly these full node names",
    needs_basename=False,
    build=_build,
)
