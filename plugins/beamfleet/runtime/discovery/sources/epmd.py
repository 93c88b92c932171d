"""``epmd:HOST`` — the nodes registered in the EPMD at HOST."""

from __future__ import annotations

from beamfleet.runtime.constants import EPMD_PORT
from beamfleet.runtime.discovery.errors import ConfigError, SourceError
from beamfleet.runtime.discovery.peers import Peer
from beamfleet.runtime.discovery.sources.kind import BuildContext, SourceKind, SourceSpec
from beamfleet.runtime.erlang_dist import DistError
from beamfleet.runtime.erlang_dist import epmd as epmd_client
from beamfleet.runtime.host_port import split_host_port


class EpmdSource:
    """``alive@HOST`` for every registered ``alive`` (only ``basename`` when one is set).

    Example::

        EpmdSource("10.0.1.3", basename="app")
    """

    def __init__(
        self, host: str, *, basename: str | None, port: int = 4369, timeout: float = 2.0
    ) -> None:
        self.label = f"epmd:{host}"
        self.basename = basename
        self._host = host
        self._port = port
        self._timeout = timeout
        self.empty_reason = ""  # an empty EPMD answer needs no explanation
        self.resolver_stats = None  # no DNS lookups

    async def poll(self) -> set[Peer]:
        try:
            names = await epmd_client.names(self._host, port=self._port, timeout=self._timeout)
        except (DistError, OSError) as exc:
            raise SourceError(self.label, str(exc)) from exc
        return {
            Peer(f"{alive}@{self._host}", self._host)
            for alive in names
            if self.basename is None or alive == self.basename
        }


def _build(spec: SourceSpec, ctx: BuildContext) -> EpmdSource:
    try:
        host, port = split_host_port(spec.arg, default_port=EPMD_PORT)
    except ValueError as exc:
        raise ConfigError([f"--source epmd:{spec.arg}: expected HOST[:PORT] ({exc})"]) from exc
    return EpmdSource(host, basename=spec.basename, port=port, timeout=ctx.timeout)


SOURCE_KIND = SourceKind(
    kind="epmd",
    usage="epmd:HOST[:PORT]",
    example="10.0.0.1",
    help="the names registered in the EPMD at HOST: alive@HOST (only --basename's, when set)",
    needs_basename=False,
    build=_build,
)
