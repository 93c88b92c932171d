"""Every setting of ``beamfleet agent``, declared once.

:data:`SETTINGS` is the only place an agent option is written down. From it come the
``beamfleet agent`` click options (help with the default appended), the ``BEAMFLEET_*``
environment variables, the TOML keys, the bounds checks, the defaults of
:class:`~beamfleet.runtime.discovery.config.AgentConfig`, and the options table of
``docs/agent.md``. To add an option, add one :class:`Setting` here (and the matching
``AgentConfig`` field), then regenerate the docs::

    PYTHONPATH=plugins python -m beamfleet.runtime.discovery.settings --write-docs docs/agent.md

``--markdown`` prints the options table instead, ``--sources-markdown`` the peer-source table.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beamfleet.runtime.constants import AGENT_PORT, COOKIE_MOUNT_PATH, EPMD_PORT
from beamfleet.runtime.discovery.ownership import MODES
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.server import parse_listen
from beamfleet.runtime.discovery.sources import REGISTRY, sources_help
from beamfleet.runtime.discovery.sources.resolver import parse_nameserver
from beamfleet.runtime.discovery.sources.subnet import parse_subnets

ENV_PREFIX = "BEAMFLEET_"

Check = Callable[[Any], str | None]
"""A bounds check: ``None`` when the value is fine, else the problem after the flag name."""


def at_least(low: float) -> Check:
    """A check that the value is ``>= low``, e.g. ``at_least(0.05)``."""

    def check(value: Any) -> str | None:
        return None if value >= low else f"must be >= {low:g}, got {value:g}"

    return check


def fraction(value: Any) -> str | None:
    """A check that the value is in [0, 1)."""
    return None if 0 <= value < 1 else f"must be in [0, 1), got {value:g}"


def share(value: Any) -> str | None:
    """A check that the value is in (0, 1]."""
    return None if 0 < value <= 1 else f"must be in (0, 1], got {value:g}"


def existing_file(value: Any) -> str | None:
    """A check that the value names a regular file."""
    return None if Path(value).is_file() else f"{value}: no such file"


def nameservers(text: str) -> list[tuple[str, int]]:
    """``"10.0.0.2, 10.0.0.3:5353"`` -> ``[("10.0.0.2", 53), ("10.0.0.3", 5353)]``."""
    return [parse_nameserver(ns) for ns in text.replace(",", " ").split()]


@dataclass(frozen=True)
class Setting:
    """One option of ``beamfleet agent``.

    Args:
        name: snake_case; gives the flag (``--dns-timeout``), the env var
            (``BEAMFLEET_DNS_TIMEOUT``) and the TOML key (``dns_timeout``).
        type: ``str``, ``int``, ``float`` or ``bool`` (a ``--x/--no-x`` flag).
        default: the value when nothing sets it, as a user would write it (``None``: unset).
        help: one line saying what it means; the default is appended automatically.
        unit: appended to the default when shown (``"s"``).
        default_text: how to show a default that is not a plain value (``"/etc/resolv.conf"``).
        required: the agent does not start without it.
        choices: the only values allowed.
        metavar: the placeholder in ``--help`` (``ADDR:PORT``).
        check: a bounds check on the typed value.
        convert: typed value -> the ``AgentConfig`` value; may raise ``ConfigError``/``ValueError``.
        repeatable: may be given several times (``--source``); the env var is then the
            plural name, space-separated, and TOML holds ``[[name]]`` tables.
        in_toml: read from the TOML file too (``--config`` itself is not).
        field: the ``AgentConfig`` field it fills ("" for none; default: ``name``).

    Example::

        Setting("interval", float, 1.0, "Seconds between polls.", unit="s",
                check=at_least(0.05))
    """

    name: str
    type: type[Any]
    default: Any
    help: str
    unit: str = ""
    default_text: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    metavar: str = ""
    check: Check | None = None
    convert: Callable[[Any], Any] | None = None
    repeatable: bool = False
    in_toml: bool = True
    field: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper() + ("S" if self.repeatable else "")

    @property
    def toml_key(self) -> str | None:
        return self.name if self.in_toml else None

    @property
    def config_field(self) -> str:
        """The ``AgentConfig`` field this setting fills ("" when none)."""
        return self.name if self.field is None else self.field

    @property
    def shown_default(self) -> str:
        """The default as people read it: ``1 s``, ``off``, ``required``, ``-``."""
        if self.required:
            return "required"
        if self.default_text:
            return self.default_text
        if self.default in (None, ""):
            return "-"
        if self.type is bool:
            text = "on" if self.default else "off"
        elif isinstance(self.default, float):
            text = f"{self.default:g}"
        else:
            text = str(self.default)
        return f"{text} {self.unit}".strip()

    @property
    def cli_help(self) -> str:
        """``help`` with the default and the env var appended, for ``--help``."""
        shown = self.shown_default
        default = {"-": "", "required": "required, "}.get(shown, f"default {shown}, ")
        plural = ", space-separated" if self.repeatable else ""
        return f"{self.help.rstrip('.')} ({default}env {self.env}{plural})."

    def default_value(self) -> Any:
        """The default as ``AgentConfig`` holds it (converted)."""
        if self.default is None or self.convert is None:
            return self.default
        return self.convert(self.default)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "source",
        str,
        None,
        f"Where the peers come from; repeatable: {sources_help()}.",
        required=True,
        metavar="KIND:ARG",
        repeatable=True,
        field="sources",
    ),
    Setting(
        "basename",
        str,
        None,
        "Name before @ for peer sources that give addresses.",
        metavar="NAME",
        field="",  # each SourceSpec carries it (a TOML [[source]] may override it)
    ),
    Setting("ownership", str, "all", "Which nodes this agent drives.", choices=MODES),
    Setting("interval", float, 1.0, "Seconds between polls.", unit="s", check=at_least(0.05)),
    Setting("jitter", float, 0.1, "Random ± fraction of the interval.", check=fraction),
    Setting(
        "cookie_file",
        str,
        None,
        f"File holding the Erlang cookie (in a container: {COOKIE_MOUNT_PATH}); "
        "the cookie is never taken from an argument.",
        required=True,
        metavar="PATH",
        check=existing_file,
        convert=Path,
    ),
    Setting(
        "tls_cert",
        str,
        None,
        "Client certificate (PEM) for nodes using TLS distribution (-proto_dist inet_tls); "
        "with --tls-key and --tls-ca, all three or none.",
        metavar="PATH",
        check=existing_file,
        convert=Path,
    ),
    Setting(
        "tls_key",
        str,
        None,
        "Private key of --tls-cert (PEM, unencrypted, readable by its owner only).",
        metavar="PATH",
        check=existing_file,
        convert=Path,
    ),
    Setting(
        "tls_ca",
        str,
        None,
        "CA certificate(s) the nodes' TLS certificates must be signed by (PEM).",
        metavar="PATH",
        check=existing_file,
        convert=Path,
    ),
    Setting(
        "listen",
        str,
        f"127.0.0.1:{AGENT_PORT}",
        "Health/metrics/status HTTP address.",
        metavar="ADDR:PORT",
        convert=parse_listen,
    ),
    Setting(
        "config",
        str,
        None,
        "Optional TOML file with any of these settings.",
        metavar="PATH",
        in_toml=False,
        field="",
    ),
    Setting(
        "naming",
        str,
        "ip",
        "How an address becomes a node name: ip, reverse, or a template like '{basename}@{ip}'.",
        metavar="ip|reverse|TEMPLATE",
        convert=PeerNaming.parse,
    ),
    Setting(
        "nameserver",
        str,
        "",
        "DNS server(s), comma-separated.",
        metavar="IP[:PORT],...",
        default_text="/etc/resolv.conf",
        convert=nameservers,
        field="nameservers",
    ),
    Setting(
        "subnet",
        str,
        "",
        "Networks the dns and srv sources' addresses must be in, comma-separated; the "
        "others are dropped (logged once), so no node is connected outside the cluster.",
        metavar="CIDR,...",
        default_text="no filter",
        convert=parse_subnets,
        field="subnets",
    ),
    Setting("agents_dns", str, None, "rendezvous: the agents' own DNS name.", metavar="NAME"),
    Setting(
        "advertise",
        str,
        None,
        "rendezvous: this agent's address among --agents-dns.",
        metavar="IP",
    ),
    Setting("dns_timeout", float, 2.0, "Per-query DNS timeout.", unit="s", check=at_least(0.05)),
    Setting("connect_timeout", float, 3.0, "Per-connect timeout.", unit="s", check=at_least(0.05)),
    Setting("max_parallel", int, 16, "Connects in flight per node.", check=at_least(1)),
    Setting(
        "grace_polls",
        int,
        3,
        "Successful polls a peer must be absent from before removal.",
        check=at_least(1),
    ),
    Setting(
        "grace_seconds",
        float,
        10.0,
        "Seconds a peer must also be absent for before removal.",
        unit="s",
        check=at_least(0.0),
    ),
    Setting(
        "max_removal_fraction",
        float,
        0.34,
        "Largest share of the managed peers removed per grace window (one peer always may "
        "be); the others wait for a later window, so a partial answer cannot empty the cluster.",
        check=share,
    ),
    Setting(
        "allow_empty",
        bool,
        False,
        "Accept an empty answer as 'no peers' (off: keep the last good set).",
    ),
    Setting(
        "status_public",
        bool,
        False,
        "Serve /status (every node's peers and errors) to any client, not loopback only.",
    ),
    Setting(
        "backoff_max",
        float,
        10.0,
        "Cap of a failing peer source's backoff.",
        unit="s",
        check=at_least(0.05),
    ),
    Setting("epmd_port", int, EPMD_PORT, "EPMD port on the nodes' hosts."),
    Setting("log_level", str, "info", "Log verbosity.", choices=("info", "debug")),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The declaration called ``name`` (KeyError names the unknown setting)."""
    return BY_NAME[name]


# ---- docs -----------------------------------------------------------------------------

OPTIONS_MARKERS = ("<!-- agent-options:begin -->", "<!-- agent-options:end -->")
SOURCES_MARKERS = ("<!-- peer-sources:begin -->", "<!-- peer-sources:end -->")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_markdown() -> str:
    """The Markdown table of every setting: flag, env var, TOML key, default, meaning."""
    rows = ["| flag | env var | TOML key | default | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        flag = f"`{s.flag} {s.metavar}`" if s.metavar else f"`{s.flag}`"
        if s.type is bool:
            flag = f"`{s.flag}` / `--no-{s.flag[2:]}`"
        elif s.choices:
            flag = f"`{s.flag} {'|'.join(s.choices)}`"
        env = f"`{s.env}`" + (" (space-separated)" if s.repeatable else "")
        key = s.toml_key
        toml = (
            "-"
            if key is None
            else (f"`[[{key}]]` (kind, arg, basename)" if s.repeatable else f"`{key}`")
        )
        rows.append(
            f"| {_cell(flag)} | {env} | {toml} | {_cell(s.shown_default)} | {_cell(s.help)} |"
        )
    return "\n".join(rows) + "\n"


def sources_markdown() -> str:
    """The Markdown table of every registered peer-source kind."""
    rows = ["| form | needs `--basename` | gives |", "|---|---|---|"]
    for k in REGISTRY.values():
        rows.append(
            f"| `{_cell(k.usage)}`, e.g. `{_cell(k.example_spec)}` "
            f"| {'yes' if k.needs_basename else 'no'} | {_cell(k.help)} |"
        )
    return "\n".join(rows) + "\n"


def between(text: str, markers: tuple[str, str]) -> str:
    """The text between the two marker lines (ValueError when they are missing)."""
    match = re.search(re.escape(markers[0]) + r"\n(.*?)" + re.escape(markers[1]), text, re.S)
    if match is None:
        raise ValueError(f"markers {markers[0]} ... {markers[1]} not found")
    return match.group(1)


def replace_between(text: str, markers: tuple[str, str], body: str) -> str:
    """``text`` with the part between the marker lines replaced by ``body``."""
    old = between(text, markers)
    return text.replace(f"{markers[0]}\n{old}{markers[1]}", f"{markers[0]}\n{body}{markers[1]}")


def render_docs(text: str) -> str:
    """``text`` (docs/agent.md) with both generated tables brought up to date."""
    text = replace_between(text, OPTIONS_MARKERS, options_markdown())
    return replace_between(text, SOURCES_MARKERS, sources_markdown())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beamfleet.runtime.discovery.settings",
        description="Print or regenerate the agent's documentation tables.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the options table")
    group.add_argument("--sources-markdown", action="store_true", help="print the sources table")
    group.add_argument("--write-docs", metavar="PATH", help="rewrite both tables in PATH")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(options_markdown())
    elif args.sources_markdown:
        sys.stdout.write(sources_markdown())
    else:
        path = Path(args.write_docs)
        path.write_text(render_docs(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
