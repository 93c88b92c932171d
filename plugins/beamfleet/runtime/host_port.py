"""``HOST:PORT`` text, as the agent's options take it (``--listen``, ``--nameserver``, epmd).

Example::

    split_host_port("10.0.0.2:5353")                  # ("10.0.0.2", 5353)
    split_host_port("[fd00::2]:53")                   # ("fd00::2", 53)
    split_host_port("fd00::2", default_port=53)       # ("fd00::2", 53)
    split_host_port("ns1", default_port=53)           # ("ns1", 53)
"""

from __future__ import annotations


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be a number from 1 to 65535, not {text!r}")
    return int(text)


def split_host_port(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """Split ``HOST:PORT`` / ``[IPV6]:PORT``; without ``default_port`` the port is required.

    A bare IPv6 address (more than one ``:``, no brackets) is a host without a port: a
    port after it could not be told from its last group, so it needs the brackets.

    Raises:
        ValueError: no host, a missing port (when there is no default) or a bad port.
    """
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, None
    if not host:
        raise ValueError(f"{text!r}: no host before the port")
    if port is None:
        if default_port is None:
            raise ValueError(f"{text!r}: no port (write HOST:PORT, or [IPV6]:PORT)")
        return host, default_port
    return host, _port(port, text)
