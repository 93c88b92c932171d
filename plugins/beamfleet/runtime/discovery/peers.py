"""Peer names: ``basename@<ip>``, ``basename@<reverse-DNS name>``, or a template.

Example::

    naming = PeerNaming.parse("ip")
    naming.name("app", "10.0.1.3")          # "app@10.0.1.3"
    PeerNaming.parse("{basename}@{ip}.svc").name("app", "10.0.1.3")   # "app@10.0.1.3.svc"
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.node_names import is_node_name, node_parts

TEMPLATE_FIELDS = ("basename", "ip", "hostname")

# Re-exported: the sources check names with the rules every part of beamfleet shares.
__all__ = ["TEMPLATE_FIELDS", "Peer", "PeerNaming", "is_ip", "is_node_name"]


@dataclass(frozen=True, order=True)
class Peer:
    """One desired node: its full Erlang name and, when known, the address it came from."""

    name: str
    address: str | None = None

    @property
    def alive(self) -> str:
        """The part before ``@`` (the basename for address-based sources)."""
        return node_parts(self.name)[0]

    @property
    def host(self) -> str:
        return node_parts(self.name)[1]


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PeerNaming:
    """How an address becomes a node name.

    ``ip`` (default) gives ``basename@10.0.1.3`` / ``basename@fd00::3``; ``reverse`` gives
    ``basename@<PTR name>`` (resolved by the dns source); anything containing ``{`` is a
    template over ``{basename}``, ``{ip}`` and ``{hostname}``.
    """

    mode: str  # "ip" | "reverse" | "template"
    template: str = ""

    @classmethod
    def parse(cls, text: str) -> PeerNaming:
        if text in ("ip", "reverse"):
            return cls(text)
        if "{" in text:
            try:
                text.format(basename="b", ip="10.0.0.1", hostname="h")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    [
                        f"--naming template {text!r} is invalid ({exc}); fields: "
                        + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                    ]
                ) from exc
            return cls("template", text)
        raise ConfigError(
            [f"--naming {text!r}: use ip, reverse, or a template such as '{{basename}}@{{ip}}'"]
        )

    def name(self, basename: str, ip: str, hostname: str | None = None) -> str:
        """The node name for ``ip`` (``hostname`` is the reverse-DNS name when known)."""
        host = hostname.rstrip(".") if hostname else ip
        if self.mode == "template":
            return self.template.format(basename=basename, ip=ip, hostname=host)
        if self.mode == "reverse":
            return f"{basename}@{host}"
        return f"{basename}@{ip}"
