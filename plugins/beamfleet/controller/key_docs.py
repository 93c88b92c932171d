"""The inventory key tables of docs/*.md, generated from the key declarations.

Each documented table sits between two marker comments; everything between them is
rewritten from the :class:`~beamfleet.controller.inventory.KeyTable` declarations, so the
docs cannot drift from what the validation and the deploys use. Regenerate after changing
a key::

    PYTHONPATH=plugins .venv/bin/python -m beamfleet.controller.key_docs

``--check`` changes nothing and exits 1 when a document is out of date.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from beamfleet.controller.deploys.cluster import CLUSTER_RUN_KEYS
from beamfleet.controller.deploys.host_mode import HOST_KEYS
from beamfleet.controller.deploys.maintenance import MAINTENANCE_KEYS
from beamfleet.controller.deploys.swarm import SWARM_KEYS
from beamfleet.controller.inventory import KeyTable

REGENERATE = "PYTHONPATH=plugins .venv/bin/python -m beamfleet.controller.key_docs"
BEGIN = f"<!-- BEGIN generated key table: edit the declarations, then run `{REGENERATE}` -->"
END = "<!-- END generated key table -->"

# document (relative to the repository root) -> the tables it shows, in order
DOCUMENTS: dict[str, tuple[KeyTable, ...]] = {
    "docs/cluster.md": CLUSTER_RUN_KEYS,
    "docs/swarm.md": (SWARM_KEYS,),
    "docs/host-mode.md": (HOST_KEYS, MAINTENANCE_KEYS),
}


class MarkersError(ValueError):
    """A document lacks the marker comments (or has them out of order)."""


def render(tables: Sequence[KeyTable]) -> str:
    """The generated block: one table, or one titled table per component."""
    if len(tables) == 1:
        return tables[0].markdown()
    return "\n".join(f"**{table.title}**\n\n{table.markdown()}" for table in tables)


def with_tables(text: str, tables: Sequence[KeyTable], document: str = "document") -> str:
    """``text`` with the block between :data:`BEGIN` and :data:`END` regenerated."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise MarkersError(f"{document}: put the key table between `{BEGIN}` and `{END}`")
    return text[: begin + len(BEGIN)] + "\n" + render(tables) + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    parser.add_argument("--check", action="store_true", help="only report stale documents")
    args = parser.parse_args(argv)
    stale = []
    for document, tables in DOCUMENTS.items():
        path = args.root / document
        text = path.read_text()
        wanted = with_tables(text, tables, document)
        if wanted != text:
            stale.append(document)
            if not args.check:
                path.write_text(wanted)
    for document in stale:
        print(f"{document}: {'out of date' if args.check else 'regenerated'}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
