"""``file:/path`` — a watched hosts-style file, one node per line.

Each non-comment line is a full node name (``app@10.0.0.1``) or an address, which becomes
``basename@address``. The file is re-read only when its mtime or size changes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.peers import Peer, PeerNaming, is_ip, is_node_name
from beamfleet.runtime.discovery.sources.kind import BuildContext, SourceKind, SourceSpec


def parse_lines(text: str, basename: str | None, naming: PeerNaming) -> tuple[set[Peer], list[str]]:
    """Peers in ``text`` and the lines that could not be understood."""
    peers: set[Peer] = set()
    bad: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        first = line.split()[0]
        if is_node_name(first):
            peers.add(Peer(first))
        elif is_ip(first) and basename:
            peers.add(Peer(naming.name(basename, first), first))
        else:
            bad.append(raw)
    return peers, bad


class FileSource:
    """Node names from a file that may change at any time.

    Example::

        FileSource("/etc/beamfleet/peers", basename="app")
    """

    def __init__(self, path: str, *, basename: str | None, naming: PeerNaming) -> None:
        self.label = f"file:{path}"
        self.basename = basename
        self._path = Path(path)
        self._naming = naming
        self._stamp: tuple[int, int] | None = None
        self._peers: set[Peer] = set()
        self.empty_reason = ""  # an empty file needs no explanation
        self.resolver_stats = None  # no DNS lookups

    def _read(self) -> set[Peer]:
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return set(self._peers)
            text = self._path.read_text()
        except OSError as exc:
            raise SourceError(self.label, f"cannot read {self._path}: {exc.strerror}") from exc
        peers, bad = parse_lines(text, self.basename, self._naming)
        if bad:
            # a half-written file must not shrink the cluster: refuse the whole answer
            raise SourceError(
                self.label,
                f"{len(bad)} unreadable line(s), first: {bad[0]!r} "
                "(expected NAME@HOST, or an address with --basename)",
            )
        self._stamp, self._peers = stamp, peers
        return set(peers)

    async def poll(self) -> set[Peer]:
        return await asyncio.to_thread(self._read)


def _build(spec: SourceSpec, ctx: BuildContext) -> FileSource:
    return FileSource(spec.arg, basename=spec.basename, naming=ctx.naming)


SOURCE_KIND = SourceKind(
    kind="file",
    usage="file:PATH",
    example="/etc/beamfleet/peers",
    help="a watched hosts-style file: one NAME@HOST, or one address (with --basename), per line",
    needs_basename=False,
    build=_build,
)
