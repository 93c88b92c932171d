"""Judging samples of a mesh taken while something rolls.

A sample is ``{node: [peers it does not list]}`` (a node that could not be asked lists
``[]``: it misses everyone) over the nodes running at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence

Sample = dict[str, list[str]]


def pairs(sample: Sample) -> set[tuple[str, str]]:
    """(node, peer it does not see); (node, node) for a node that could not be asked."""
    found = {(a, b) for a, unseen in sample.items() for b in unseen}
    return found | {(a, a) for a, unseen in sample.items() if not unseen}


def offending_samples(samples: Sequence[Sample]) -> list[Sample]:
    """Samples whose gaps do not all involve one node (the one being replaced): then
    another node lost a peer."""
    bad = []
    for sample in samples:
        found = pairs(sample)
        nodes = {n for pair in found for n in pair}
        if found and not any(all(n in pair for pair in found) for n in nodes):
            bad.append(sample)
    return bad


def lasting_gaps(samples: Sequence[Sample], most: int = 1) -> list[tuple[str, str, int]]:
    """(node, peer, samples) for every gap seen in more than ``most`` samples in a row."""
    run: dict[tuple[str, str], int] = {}
    worst: dict[tuple[str, str], int] = {}
    for sample in samples:
        found = pairs(sample)
        run = {pair: run.get(pair, 0) + 1 for pair in found}
        for pair, length in run.items():
            worst[pair] = max(worst.get(pair, 0), length)
    return sorted((a, b, n) for (a, b), n in worst.items() if n > most)
