"""Prometheus text exposition (format 0.0.4) for the agent, with no dependency."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CONVERGENCE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, math.inf)

_HELP = {
    "beamfleet_agent_polls_total": ("counter", "Polls of each source."),
    "beamfleet_agent_poll_errors_total": ("counter", "Failed (or refused empty) polls."),
    "beamfleet_agent_source_peers": ("gauge", "Peers in the last good answer of a source."),
    "beamfleet_agent_desired_peers": ("gauge", "Desired peers of an owned node."),
    "beamfleet_agent_connected_peers": ("gauge", "Desired peers an owned node is connected to."),
    "beamfleet_agent_connects_total": ("counter", "Successful connects made by the agent."),
    "beamfleet_agent_connect_failures_total": ("counter", "Connects that failed or timed out."),
    "beamfleet_agent_disconnects_total": ("counter", "Departed peers removed."),
    "beamfleet_agent_removals_deferred": (
        "gauge",
        "Departed peers kept because the removal limit of the grace window was reached.",
    ),
    "beamfleet_agent_owned_nodes": ("gauge", "Nodes this agent drives."),
    "beamfleet_agent_node_reachable": ("gauge", "1 when the agent holds a connection to the node."),
    "beamfleet_agent_node_cert_expiry_seconds": (
        "gauge",
        "TLS distribution: when the node's certificate expires (Unix time).",
    ),
    "beamfleet_agent_dns_tcp_retries_total": ("counter", "Truncated UDP answers retried on TCP."),
    "beamfleet_agent_healthy": ("gauge", "1 when /readyz answers 200."),
}


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    esc = {
        k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        for k, v in labels.items()
    }
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(esc.items())) + "}"


def _number(value: float) -> str:
    """Every digit (``{:g}`` would print a Unix time as 1.79603e+09)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class Metrics:
    """Counters, gauges and one histogram, rendered by :meth:`render`."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    conv_counts: list[int] = field(default_factory=lambda: [0] * len(CONVERGENCE_BUCKETS))
    conv_sum: float = 0.0
    conv_count: int = 0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self.values[(name, tuple(sorted(labels.items())))] = value

    def clear(self, name: str) -> None:
        for key in [k for k in self.values if k[0] == name]:
            del self.values[key]

    def drop_labelled(self, **labels: str) -> None:
        """Remove every series carrying all of ``labels`` (any name, any other labels).

        A node that is no longer driven must not leave its last values behind: a stale
        ``beamfleet_agent_node_reachable{node="..."} 0`` reads as an outage forever.

        Example::

            metrics.drop_labelled(node="app@10.0.0.3")
        """
        wanted = set(labels.items())
        for key in [k for k in self.values if wanted <= set(k[1])]:
            del self.values[key]

    def get(self, name: str, **labels: str) -> float:
        return self.values.get((name, tuple(sorted(labels.items()))), 0.0)

    def observe_convergence(self, seconds: float) -> None:
        for i, bound in enumerate(CONVERGENCE_BUCKETS):
            if seconds <= bound:
                self.conv_counts[i] += 1
        self.conv_sum += seconds
        self.conv_count += 1

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted({k[0] for k in self.values} | set(_HELP)):
            kind, text = _HELP.get(name, ("gauge", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for (n, labels), v in sorted(self.values.items()):
                if n == name:
                    lines.append(f"{name}{_labels(dict(labels))} {_number(v)}")
        h = "beamfleet_agent_convergence_seconds"
        lines += [
            f"# HELP {h} Time from a peer entering the desired set to every owned node seeing it.",
            f"# TYPE {h} histogram",
        ]
        for bound, count in zip(CONVERGENCE_BUCKETS, self.conv_counts, strict=True):
            le = "+Inf" if math.isinf(bound) else f"{bound:g}"
            lines.append(f'{h}_bucket{{le="{le}"}} {count}')
        lines += [f"{h}_sum {self.conv_sum:g}", f"{h}_count {self.conv_count}"]
        return "\n".join(lines) + "\n"
